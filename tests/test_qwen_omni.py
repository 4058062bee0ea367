"""The second policy family: a Qwen2.5-Omni thinker as the ``qwen_omni`` model plugin
(issue 19). A tiny random thinker built from configs (models/qwen_omni/tiny.py) reads
synthetic clips with audio, runs SFT and 2 GRPO steps (rollouts and log-probs with the
media), saves, and reloads exactly; the core reaches it only through the model contract.
"""

from __future__ import annotations

import functools
import json
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner

from erv_plugins.datasets.base import Sample
from erv_plugins.datasets.synthetic import write_clip

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from erv_plugins.models.qwen_omni.tiny import build_tiny_qwen_omni

    return build_tiny_qwen_omni(tmp_path_factory.mktemp("qwen") / "tiny", seed=0)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("clips")
    return {"1s": write_clip(root / "one.mp4", (200, 30, 30), 440.0, seconds=1.0),
            "3s": write_clip(root / "three.mp4", (30, 200, 30), 220.0, seconds=3.0),
            "silent": write_clip(root / "silent.mp4", (30, 30, 200), None, seconds=1.0)}


def _sample(name: str, path: Path, label: str = "happiness") -> Sample:
    return Sample(id=name, label=label, video=path,
                  explanation="The light is red and the tone is high.")


def _runs(ids: list[int], tokenizer: Any) -> list[tuple[str, int]]:
    """The tokens between <|vision_bos|> and <|vision_eos|> as (token, run length)."""
    start = ids.index(tokenizer.convert_tokens_to_ids("<|vision_bos|>"))
    end = ids.index(tokenizer.convert_tokens_to_ids("<|vision_eos|>"))
    runs: list[list[Any]] = []
    for token in tokenizer.convert_ids_to_tokens(ids[start + 1:end]):
        if runs and runs[-1][0] == token:
            runs[-1][1] += 1
        else:
            runs.append([token, 1])
    return [(t, n) for t, n in runs]


def test_erv_plugins_lists_both_policies() -> None:
    from erv_plugins.cli import build_cli

    result = CliRunner().invoke(build_cli(), ["plugins"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    at = lines.index("erv_plugins.models.builtin (builtin)")
    assert lines[at:at + 4] == ["erv_plugins.models.builtin (builtin)", "  models: omni",
                                "erv_plugins.models.qwen_omni (builtin)", "  models: qwen_omni"]


def test_each_plugin_owns_its_directories(tiny_dir: Path, tmp_path: Path) -> None:
    from erv_plugins.models.base import policy_owner
    from erv_plugins.models.omni import build_tiny_omni

    omni = build_tiny_omni(tmp_path / "omni")
    assert policy_owner(tiny_dir).name == "qwen_omni"
    assert policy_owner(omni).name == "omni"
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "config.json").write_text('{"model_type": "qwen2"}')
    assert policy_owner(tmp_path / "text") is None  # a text-only causal LM: the core's


def test_both_model_plugins_find_their_checkpoint_or_tiny_model_alike(tmp_path: Path) -> None:
    """``model_path`` of either plugin (models/base.py checkpoint_or_tiny): the recipe's
    directory, else the tiny model built once in tiny_dir, else the plugin's own advice."""
    from erv_plugins.context import BuildContext
    from erv_plugins.errors import ErvError
    from erv_plugins.models.builtin import OmniOptions, OmniPolicy
    from erv_plugins.models.qwen_omni import QwenOmniOptions, QwenOmniPolicy
    from erv_plugins.plugins import get_plugins
    from erv_plugins.recipe import ModelSpec

    plugins = get_plugins()
    built: list[tuple[str, Path]] = []
    (tmp_path / "file").write_text("")
    for cls, opts, name in ((OmniPolicy, OmniOptions, "omni"),
                            (QwenOmniPolicy, QwenOmniOptions, "qwen_omni")):
        def build(out: Path, name: str = name) -> None:  # a stand-in for the tiny builder
            built.append((name, out))
            out.mkdir(parents=True)
            (out / "config.json").write_text("{}")

        at = BuildContext(plugins=plugins, spec=ModelSpec(plugin=name, path=str(tmp_path)))
        assert cls(opts(), context=at).model_path() == str(tmp_path)
        bad = BuildContext(plugins=plugins, spec=ModelSpec(plugin=name, path=str(tmp_path / "file")))
        with pytest.raises(ErvError) as err:
            cls(opts(), context=bad).model_path()
        assert str(err.value) == f"model path {tmp_path / 'file'} is not a directory"
        tiny = cls(opts(tiny=True, tiny_dir=str(tmp_path / name)))
        tiny._build_tiny = build  # type: ignore[method-assign]
        assert [tiny.model_path(), tiny.model_path()] == [str(tmp_path / name)] * 2
    assert built == [("omni", tmp_path / "omni"), ("qwen_omni", tmp_path / "qwen_omni")]
    messages = []
    for cls, opts in ((OmniPolicy, OmniOptions), (QwenOmniPolicy, QwenOmniOptions)):
        with pytest.raises(ErvError) as err:
            cls(opts()).model_path()
        messages.append(str(err.value))
    assert messages == [
        "model: give a checkpoint `path`, or set options.tiny = true for a tiny random model",
        "model qwen_omni: give a checkpoint `path` (e.g. Qwen/Qwen2.5-Omni-3B), or set "
        "options.tiny = true for a tiny random thinker"]


def test_processor_places_video_and_audio_tokens(tiny_dir: Path, clips: dict[str, Path]) -> None:
    """use_audio_in_video: per 2 s chunk (25 positions a second) the chunk's video tokens,
    then its audio tokens. 8 frames of 32 px = 4 frame pairs x 4 x 4 merged patches."""
    from erv_plugins.models.qwen_omni import QwenOmniPolicy
    from erv_plugins.models.qwen_omni.processing import MEDIA_KEYS

    policy = QwenOmniPolicy.open(tiny_dir)
    samples = [_sample("one", clips["1s"]), _sample("three", clips["3s"]),
               _sample("silent", clips["silent"])]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ids, media = policy.encode(samples)
    assert [str(w.message) for w in caught if "no audio track" in str(w.message)] == [
        f"{clips['silent']}: no audio track; using silence"]
    tok = policy.tokenizer
    assert _runs(ids[0], tok) == [("<|audio_bos|>", 1), ("<|VIDEO|>", 64), ("<|AUDIO|>", 26),
                                  ("<|audio_eos|>", 1)]
    # 3 s: frame pairs at 0, 0.75, 1.5 s in the first chunk, 2.25 s in the second.
    assert _runs(ids[1], tok) == [("<|audio_bos|>", 1), ("<|VIDEO|>", 48), ("<|AUDIO|>", 50),
                                  ("<|VIDEO|>", 16), ("<|AUDIO|>", 25), ("<|audio_eos|>", 1)]
    assert _runs(ids[2], tok) == [("<|audio_bos|>", 1), ("<|VIDEO|>", 64), ("<|AUDIO|>", 25),
                                  ("<|audio_eos|>", 1)]
    assert [len(r) for r in ids] == [163, 212, 162]
    assert tuple(media) == MEDIA_KEYS
    assert {k: tuple(v.shape) for k, v in media.items()} == {
        "pixel_values_videos": (3, 256, 96), "video_grid_thw": (3, 3),
        "video_second_per_grid": (3,), "input_features": (3, 16, 3000),
        "feature_attention_mask": (3, 3000)}
    assert media["video_grid_thw"].tolist() == [[4, 8, 8]] * 3
    assert media["video_second_per_grid"].tolist() == [0.25, 0.75, 0.25]
    # Rows are what TRL splits; the thinker gets one tensor of every row's patches.
    inputs = policy.model_inputs({k: v[1:] for k, v in media.items()})
    assert tuple(inputs["pixel_values_videos"].shape) == (512, 96)
    assert inputs["use_audio_in_video"] is True
    assert policy.prompt_length(policy.prompt()) == 72  # one id for the clip's placeholder
    assert set(policy.suppressed_ids) == {tok.convert_tokens_to_ids(t) for t in (
        "<|IMAGE|>", "<|VIDEO|>", "<|AUDIO|>", "<|vision_bos|>", "<|vision_eos|>",
        "<|audio_bos|>", "<|audio_eos|>")}


def _logits(policy: Any, batch: Any) -> torch.Tensor:
    with torch.no_grad():
        return policy.model(**batch).logits


def test_a_full_checkpoint_loads_the_thinker_only_and_saves_reload_exactly(
        tiny_dir: Path, clips: dict[str, Path], tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file
    from transformers import Qwen2_5OmniConfig, Qwen2_5OmniThinkerForConditionalGeneration

    from erv_plugins.models.qwen_omni import QwenOmniPolicy

    policy = QwenOmniPolicy.open(tiny_dir)
    samples = [_sample("one", clips["1s"]), _sample("three", clips["3s"])]
    batch = policy.generation_inputs(samples, policy.question)
    want = _logits(policy, batch)
    # A published-style full model: thinker.*, talker.*, token2wav.* weights, one config.
    full = tmp_path / "full"
    full.mkdir()
    Qwen2_5OmniConfig(thinker_config=policy.model.config.to_dict()).save_pretrained(full)
    weights = {f"thinker.{k}": v for k, v in load_file(tiny_dir / "model.safetensors").items()}
    weights["talker.model.embed_tokens.weight"] = torch.zeros(4, 4)
    weights["token2wav.code2wav_dit_model.proj.weight"] = torch.zeros(4, 4)
    save_file(weights, full / "model.safetensors")
    policy.save(full)  # the processor and erv's clip settings
    assert QwenOmniPolicy.owns(full)
    thinker = QwenOmniPolicy.open(full)
    assert type(thinker.model) is Qwen2_5OmniThinkerForConditionalGeneration
    assert not hasattr(thinker.model, "talker") and not hasattr(thinker.model, "token2wav")
    assert not [n for n, _ in thinker.model.named_parameters()
                if n.startswith(("talker", "token2wav", "thinker"))]
    assert torch.equal(_logits(thinker, batch), want)
    # Saved as the stages save it (model, tokenizer, processor + erv settings): equal logits.
    saved = tmp_path / "saved"
    thinker.model.save_pretrained(saved)
    thinker.tokenizer.save_pretrained(saved)
    thinker.save(saved)
    assert json.loads((saved / "config.json").read_text())["model_type"] == "qwen2_5_omni_thinker"
    assert json.loads((saved / "erv_qwen_omni.json").read_text()) == {
        "frames": 8, "use_audio_in_video": True, "min_pixels": 256, "max_pixels": 1024}
    reloaded = QwenOmniPolicy.open(saved)
    assert torch.equal(_logits(reloaded, reloaded.generation_inputs(samples, policy.question)),
                       want)


RECIPE = """\
name = "tiny_qwen"
stages = ["sft", "grpo", "eval"]
run_dir = "{run}"

[model]
plugin = "qwen_omni"
options = {{ tiny = true }}

[verifier]
plugin = "keywords"

[rewards.format]
[rewards.answer]
options = {{ label_space = "mafw" }}
[rewards.explanation]

[sft]
dataset = {{ plugin = "jsonl", root = "{data}", split = "train", options = {{ label_space = "mafw" }} }}
synthetic = {{ out = "{data}", n_per_label = 2, labels = ["happiness", "sadness"], layouts = ["mafw", "jsonl"] }}
max_steps = 2
batch_size = 2
lr = 1e-3
warmup_ratio = 0.0

[grpo]
dataset = {{ plugin = "mafw", root = "{data}/mafw", split = "train" }}
num_generations = 2
batch_size = 4
grad_accum = 1
lr = 1e-4
max_steps = 2
max_completion_length = 6
save_steps = 10

[eval]
dataset = {{ plugin = "mafw", root = "{data}/mafw", split = "test" }}
judge = {{ plugin = "verifier" }}
max_new_tokens = 6
batch_size = 2
bootstrap = 0
"""


def test_tiny_thinker_runs_sft_two_grpo_steps_and_eval_with_its_media(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import erv_plugins.testing.rewards as keywords
    from transformers import Qwen2_5OmniThinkerForConditionalGeneration as Thinker

    from erv_plugins.models.base import policy_owner
    from erv_plugins.plugins import Plugins
    from erv_plugins.recipe import load_recipe
    from erv_plugins.stages import run_recipe
    from erv_plugins.training.runlog import MetricsLog

    calls: list[tuple[str, bool, bool]] = []  # (call, with video and audio, grad enabled)
    forward, generate = Thinker.forward, Thinker.generate

    @functools.wraps(forward)  # generate checks its kwargs against forward's signature
    def recording_forward(self: Any, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("past_key_values") is None or kwargs.get("labels") is not None:
            calls.append(("sft" if kwargs.get("labels") is not None else "forward",
                          kwargs.get("pixel_values_videos") is not None
                          and kwargs.get("input_features") is not None,
                          torch.is_grad_enabled()))
        return forward(self, *args, **kwargs)

    @functools.wraps(generate)
    def recording_generate(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(("generate", kwargs.get("pixel_values_videos") is not None
                      and kwargs.get("input_features") is not None
                      and bool(kwargs.get("use_audio_in_video")), torch.is_grad_enabled()))
        return generate(self, *args, **kwargs)

    monkeypatch.setattr(Thinker, "forward", recording_forward)
    monkeypatch.setattr(Thinker, "generate", recording_generate)
    recipe = tmp_path / "r.toml"
    recipe.write_text(RECIPE.format(run=tmp_path / "run", data=tmp_path / "data"))
    plugins = Plugins(entry_points=False, extra=[keywords])
    run = run_recipe(load_recipe(recipe, plugins), plugins, echo=lambda _: None)
    sft = json.loads((run / "sft" / ".done").read_text())
    assert sft["steps"] == 2
    assert [r["step"] for r in MetricsLog(run / "grpo" / "metrics.jsonl").read()] == [1, 2]
    for stage in ("sft", "grpo"):
        assert policy_owner(run / stage / "model").name == "qwen_omni"
        assert (run / stage / "model" / "erv_qwen_omni.json").is_file()
    assert len((run / "eval" / "predictions.jsonl").read_text().splitlines()) == 2
    kinds = {(c, media, grad) for c, media, grad in calls}
    # SFT's forward (grad), GRPO's rollouts and eval (no grad), GRPO's reference and old
    # log-prob passes (no grad) and its policy pass (grad): every one saw the clip's media.
    assert kinds == {("sft", True, True), ("generate", True, False),
                     ("forward", True, False), ("forward", True, True)}


def _trainable(model: Any) -> dict[str, int]:
    """Trainable parameters per part of the thinker (all parts listed, 0 when frozen)."""
    parts: dict[str, int] = {}
    for name, param in model.named_parameters():
        part = ".".join(name.split(".")[:2]) if name.startswith("model.") else name
        parts[part] = parts.get(part, 0) + int(param.requires_grad)
    return parts


def test_train_vision_tower_unfreezes_the_thinkers_vision_encoder_in_sft_and_grpo(
        tiny_dir: Path, tmp_path: Path) -> None:
    """``train_vision_tower`` ([sft] / [grpo], else the model option): the stage trains
    ``model.visual`` (all 22 tensors of the tiny thinker's) or none of it; the audio
    encoder stays frozen. GRPO's policy is opened by TRL from the path, so the trainer is
    handed the stage's choice; the reference model is never trained."""
    from datasets import Dataset
    from trl import GRPOConfig

    from erv_plugins.models.qwen_omni import QwenOmniPolicy
    from erv_plugins.training.policy import load_policy
    from erv_plugins.training.trainer import OmniGRPOTrainer

    frozen = {"model.audio_tower": 0, "model.visual": 0, "model.language_model": 26,
              "lm_head.weight": 1}
    trained = {**frozen, "model.visual": 22}
    sft = {flag: load_policy(tiny_dir, train_vision_tower=flag).model for flag in (False, True)}
    assert (_trainable(sft[False]), _trainable(sft[True])) == (frozen, trained)
    assert sorted(n for n, p in sft[True].named_parameters()
                  if p.requires_grad and n.startswith("model.visual.")) == sorted(
        n for n, _ in sft[True].model.visual.named_parameters(prefix="model.visual"))

    opened = QwenOmniPolicy.open(tiny_dir)
    args = GRPOConfig(output_dir=str(tmp_path / "grpo"), num_generations=2,
                      per_device_train_batch_size=2, beta=0.04, use_cpu=True, bf16=False,
                      report_to=[])

    def grpo(**given: Any) -> OmniGRPOTrainer:
        return OmniGRPOTrainer(
            model=str(tiny_dir), processing_class=opened.tokenizer,
            reward_funcs=[lambda completions, **_: [0.0] * len(completions)], args=args,
            train_dataset=Dataset.from_list([{"prompt": "x"}]), media=opened,
            fast_path=False, **given)

    on, off, unsaid = grpo(train_vision_tower=True), grpo(train_vision_tower=False), grpo()
    assert [_trainable(t.model) for t in (on, off, unsaid)] == [trained, frozen, frozen]
    # The optimiser TRL builds from requires_grad sees the tower's tensors too.
    on.create_optimizer()
    assert sum(p.numel() for g in on.optimizer.param_groups for p in g["params"]) == sum(
        p.numel() for p in on.model.parameters() if p.requires_grad)
    assert str(on.ref_model.config._name_or_path) == str(tiny_dir)


def test_erv_data_check_decodes_with_the_recipe_models_settings(tmp_path: Path) -> None:
    """`erv data check` asks the recipe's model plugin (media_settings) how to decode."""
    from erv_plugins.cli import build_cli
    from erv_plugins.datasets.synthetic import write_synthetic

    write_synthetic(tmp_path / "data", n_per_label=2, labels=("happiness", "sadness"),
                    layouts=("mafw",), seed=0)
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'name = "c"\nstages = ["grpo"]\nrun_dir = "{tmp_path / "run"}"\n'
                      '[model]\nplugin = "qwen_omni"\noptions = { tiny = true, frames = 4 }\n'
                      f'[grpo]\ndataset = {{ plugin = "mafw", root = "{tmp_path / "data"}/mafw" }}\n')
    result = CliRunner().invoke(build_cli(), ["data", "check", str(recipe), "--no-cache"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == ("media: 4 frames of 224 px, 128 mels x 30.0 s; "
                                             "cache off")
    assert "grpo.dataset (mafw, split train): 2 clips, 2 ok, 0 without audio, 0 errors" \
        in result.output


def test_generation_needs_a_directory_a_model_plugin_owns(tmp_path: Path) -> None:
    from erv_plugins.errors import ErvError
    from erv_plugins.evaluation.generate import generate_predictions

    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "config.json").write_text('{"model_type": "qwen2"}')
    with pytest.raises(ErvError, match=r"text: no model plugin owns this directory"):
        generate_predictions(str(tmp_path / "text"), [], tmp_path / "out")


def test_recipes_validate_and_keep_the_paper_settings() -> None:
    from erv_plugins.cli import build_cli
    from erv_plugins.recipe import load_recipe

    recipes = Path(__file__).resolve().parents[1] / "recipes"
    for name in ("qwen2_5_omni_3b.toml", "tiny_cpu_qwen_omni.toml"):
        result = CliRunner().invoke(build_cli(), ["validate", str(recipes / name)])
        assert result.exit_code == 0, result.output
    qwen, paper = (load_recipe(recipes / n) for n in ("qwen2_5_omni_3b.toml", "paper_0_5b.toml"))
    assert (qwen.model.plugin, qwen.model.path) == ("qwen_omni", "Qwen/Qwen2.5-Omni-3B")
    assert qwen.rewards == paper.rewards and qwen.verifier == paper.verifier
    same = ("num_generations", "beta", "lr", "batch_size", "grad_accum", "epochs",
            "temperature", "max_completion_length", "loss_type", "scale_rewards")
    assert {k: getattr(qwen.grpo, k) for k in same} == {k: getattr(paper.grpo, k) for k in same}
    assert (qwen.grpo.prompt_template, qwen.sft.prompt_template) == ("policy", "policy")
    tiny = load_recipe(recipes / "tiny_cpu_qwen_omni.toml")
    assert (tiny.model.plugin, tiny.model.options.tiny, tiny.stages) == (
        "qwen_omni", True, ["sft", "train_verifier", "grpo", "eval"])
