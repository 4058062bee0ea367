"""The omni policy: config keys as published, tiny model, media reaching the LM, generation,
completion log-probs for GRPO, and loading HumanOmni-format checkpoint directories."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

from erv_plugins.datasets.synthetic import STYLE, write_clip  # noqa: E402
from erv_plugins.errors import ErvError  # noqa: E402
from erv_plugins.models.omni import (  # noqa: E402
    EMOTION_QUESTION,
    OmniConfig,
    OmniForCausalLM,
    OmniProcessor,
    build_tiny_omni,
    load_omni,
)

torch.set_num_threads(1)

# The published config.json of R1-Omni-0.5B / HumanOmni-0.5B (tower paths replaced).
RELEASE_0_5B: dict[str, Any] = {
    "architectures": ["HumanOmniQwen2ForCausalLM"], "attention_dropout": 0.0,
    "audio_hidden_size": 1280, "bos_token_id": 151643, "eos_token_id": 151645,
    "freeze_mm_mlp_adapter": False, "hidden_act": "silu", "hidden_size": 896,
    "hyper_layers": [15, 22], "image_aspect_ratio": "pad", "initializer_range": 0.02,
    "intermediate_size": 4864, "max_position_embeddings": 32768, "max_window_layers": 21,
    "mm_audio_projector_type": "mlp2x_gelu", "mm_audio_tower": "models/whisper-large-v3",
    "mm_hidden_size": 768, "mm_projector_lr": None, "mm_projector_type": "all_in_one_small",
    "mm_tunable_parts": "mm_mlp_adapter,audio_projector,mm_language_model",
    "mm_use_x_start_end": True, "mm_vision_select_feature": "patch",
    "mm_vision_select_layer": -2, "mm_vision_tower": "models/siglip-base-patch16-224",
    "model_type": "HumanOmni_qwen2", "num_attention_heads": 14, "num_frames": 8,
    "num_hidden_layers": 24, "num_key_value_heads": 2, "rms_norm_eps": 1e-06,
    "rope_scaling": None, "rope_theta": 1000000.0, "sliding_window": None,
    "text_model_path": "models/bert-base-uncased", "tie_word_embeddings": True,
    "tokenizer_model_max_length": 2048, "tokenizer_padding_side": "right",
    "torch_dtype": "bfloat16", "transformers_version": "4.49.0", "tune_mm_mlp_adapter": False,
    "use_cache": True, "use_local_models": True, "use_mm_proj": True,
    "use_sliding_window": False, "vocab_size": 151936,
}  # fmt: skip


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_omni(tmp_path_factory.mktemp("tiny_omni"), seed=0)


@pytest.fixture(scope="session")
def tiny(tiny_dir: Path) -> tuple[OmniForCausalLM, OmniProcessor]:
    return load_omni(tiny_dir)


@pytest.fixture(scope="session")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("omni_clips")
    return {label: write_clip(d / f"{label}.mp4", STYLE[label][0], STYLE[label][1], seed=i)
            for i, label in enumerate(("happiness", "sadness"))}


def test_published_config_keys_give_the_paper_sizes() -> None:
    config = OmniConfig.from_dict(RELEASE_0_5B)
    assert (config.hidden_size, config.vision_config.hidden_size,
            config.vision_config.image_size, config.audio_config.d_model,
            config.audio_config.num_mel_bins) == (896, 768, 224, 1280, 128)
    # 8 frames x 7 x 7 after the 2x2 samplers; 1500 Whisper frames / avg_pool1d(3).
    assert (config.num_video_tokens, config.num_audio_tokens, config.num_audio_frames) == (
        392, 500, 3000)
    assert config.text_gate_hidden_size == 3584  # hard-coded in the release
    assert config.mm_tunable_parts == "mm_mlp_adapter,audio_projector,mm_language_model"
    seven_b = OmniConfig.from_dict({**RELEASE_0_5B, "mm_projector_type": "all_in_one",
                                    "mm_vision_tower": "models/siglip-so400m-patch14-384"})
    assert (seven_b.vision_config.hidden_size, seven_b.num_video_tokens) == (1152, 8 * 14 * 14)
    with pytest.raises(ValueError, match="gives 8x8 tokens per frame but the face branch"):
        _ = OmniConfig.from_dict({**RELEASE_0_5B, "mm_projector_type": "all_in_one"}).num_video_tokens


def test_tiny_tokenizer_chat_template_and_tags(tiny: tuple[OmniForCausalLM, OmniProcessor]) -> None:
    _, processor = tiny
    assert processor.prompt("Which emotion?") == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n<vi_start><video><vi_end>\n<au_start><audio><au_end>\n"
        "Which emotion?<|im_end|>\n<|im_start|>assistant\n")
    parts = [{"role": "user", "content": [{"type": "video"}, {"type": "audio"},
                                          {"type": "text", "text": "Which emotion?"}]}]
    assert processor.apply_chat_template(parts, tokenize=False, add_generation_prompt=True) == (
        processor.prompt("Which emotion?"))
    tok = processor.tokenizer
    ids = tok("<think>a</think>\n<answer>joy</answer><|video_pad|><|im_end|>")["input_ids"]
    # Reasoning tags survive skip_special_tokens (the format reward reads them).
    assert tok.decode(ids, skip_special_tokens=True) == "<think>a</think>\n<answer>joy</answer>"
    assert tok.convert_ids_to_tokens(ids[:1]) == ["<think>"]
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    # As in a published HumanOmni tokenizer, the media markers are plain text.
    vocab = tok.get_vocab()
    assert not {"<video>", "<audio>", "<vi_start>", "<au_end>"} & set(vocab)
    assert {"<|vision_start|>", "<|video_pad|>", "<|vision_end|>"} <= set(vocab)


def test_processor_repeats_placeholders_once_per_feature(
    tiny: tuple[OmniForCausalLM, OmniProcessor], clips: dict[str, Path]
) -> None:
    model, processor = tiny
    prompts = [processor.prompt(), processor.prompt("Which emotion, shortly?")]
    batch = processor(prompts, videos=[clips["happiness"], clips["sadness"]])
    assert set(batch) == {"input_ids", "attention_mask", "videos", "audios", "gate_input_ids",
                          "gate_attention_mask"}
    counts = [(int((r == processor.video_token_id).sum()), int((r == processor.audio_token_id).sum()))
              for r in batch["input_ids"]]
    assert counts == [(32, 33), (32, 33)] == [(model.config.num_video_tokens,
                                               model.config.num_audio_tokens)] * 2
    # The release's placeholder ids: in no vocabulary, never sampled.
    assert (processor.video_token_id, processor.audio_token_id) == (-201, -202)
    assert processor.decode(batch["input_ids"][0]).count("<video>") == 1
    assert tuple(batch["videos"].shape) == (2, 8, 3, 32, 32)
    assert tuple(batch["audios"].shape) == (2, 16, 198)
    assert int(batch["attention_mask"][1, 0]) == 0  # left padding for generation
    gate = processor.gate_tokenizer.convert_ids_to_tokens(batch["gate_input_ids"][1])
    # The bare question, as the release feeds its BERT gate; unknown words split into pieces.
    assert gate[:13] == ["[CLS]", "which", "emotion", ",", "s", "##h", "##o", "##r", "##t",
                         "##l", "##y", "?", "[SEP]"]
    with pytest.raises(ErvError, match="1 videos given for 2 prompts"):
        processor(prompts, videos=[clips["happiness"]])
    with pytest.raises(ErvError, match="prompts hold <audio> but no audios were given"):
        processor(prompts[:1], videos=[torch.zeros(8, 3, 32, 32)])


def _logits(model: OmniForCausalLM, batch: Any) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch).logits[:, -1, :]


def test_video_and_audio_reach_the_lm(
    tiny: tuple[OmniForCausalLM, OmniProcessor], clips: dict[str, Path]
) -> None:
    model, processor = tiny
    prompt = processor.prompt()
    happy = processor([prompt], videos=[clips["happiness"]])
    sad = processor([prompt], videos=[clips["sadness"]])
    base = _logits(model, happy)
    assert torch.equal(base, _logits(model, processor([prompt], videos=[clips["happiness"]])))
    # Identical inputs give identical logits, so any difference is the media's doing
    # (random tiny weights make it small; float noise would be ~1e-7).
    assert float((base - _logits(model, sad)).abs().max()) > 1e-4  # the clip matters
    audio_only = dict(happy)
    audio_only["audios"] = sad["audios"]
    assert float((base - _logits(model, audio_only)).abs().max()) > 1e-4  # so does its sound
    video_only = dict(happy)
    video_only["videos"] = sad["videos"]
    assert float((base - _logits(model, video_only)).abs().max()) > 1e-4  # and its frames
    no_media = {k: happy[k] for k in ("input_ids", "attention_mask")}
    with pytest.raises(ValueError, match="input_ids hold video placeholder tokens but no videos"):
        model(**no_media)


def test_generate_with_video_and_audio(
    tiny: tuple[OmniForCausalLM, OmniProcessor], clips: dict[str, Path]
) -> None:
    model, processor = tiny
    batch = processor([processor.prompt()] * 2, videos=[clips["happiness"], clips["sadness"]])
    width = batch["input_ids"].shape[1]
    greedy = model.generate(**batch, do_sample=False, max_new_tokens=4)
    assert greedy.shape == (2, width + 4)
    assert greedy[:, width].tolist() == _logits(model, batch).argmax(-1).tolist()
    torch.manual_seed(0)
    sampled = model.generate(**batch, do_sample=True, temperature=1.0, top_p=0.9,
                             max_new_tokens=6)
    torch.manual_seed(0)
    again = model.generate(**batch, do_sample=True, temperature=1.0, top_p=0.9,
                           max_new_tokens=6)
    assert sampled.shape == (2, width + 6) and torch.equal(sampled, again)
    assert torch.equal(sampled[:, :width], batch["input_ids"])


def test_completion_log_probs_for_grpo(
    tiny: tuple[OmniForCausalLM, OmniProcessor], clips: dict[str, Path]
) -> None:
    model, processor = tiny
    tok = processor.tokenizer
    prompt_batch = processor([processor.prompt()], videos=[clips["sadness"]])
    completion = torch.tensor([tok("<think>blue</think><answer>sad</answer><|im_end|>")
                               ["input_ids"]])
    n = completion.shape[1]
    ids = torch.cat([prompt_batch["input_ids"], completion], dim=1)
    mask = torch.ones_like(ids)
    media = {k: prompt_batch[k] for k in ("videos", "audios", "gate_input_ids",
                                          "gate_attention_mask")}
    with torch.no_grad():
        logps = model.completion_log_probs(ids, mask, n, **media)
        full = torch.log_softmax(model(input_ids=ids, attention_mask=mask, **media).logits, -1)
        labels = ids.masked_fill(torch.arange(ids.shape[1]) < ids.shape[1] - n, -100)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels, **media).loss
    expected = full[0, -n - 1:-1].gather(-1, completion[0, :, None]).squeeze(-1)
    assert logps.shape == (1, n)
    torch.testing.assert_close(logps[0], expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(loss, -logps.mean(), rtol=1e-5, atol=1e-5)


def test_training_updates_the_lm_and_projectors_but_not_the_frozen_encoders(
    tiny_dir: Path, clips: dict[str, Path]
) -> None:
    model, processor = load_omni(tiny_dir)
    model.train()
    batch = processor([processor.prompt()], videos=[clips["happiness"]])
    model(**batch, labels=batch["input_ids"]).loss.backward()
    grads = {n: p.grad is not None and bool(p.grad.abs().sum() > 0)
             for n, p in model.named_parameters()}
    assert grads["model.layers.0.mlp.up_proj.weight"]
    assert grads["model.mm_projector.readout_video.2.weight"]
    assert grads["model.audio_projector.0.weight"]
    assert grads["model.bert_gate.2.weight"]
    assert not any(p.requires_grad for n, p in model.named_parameters()
                   if n.startswith(("model.vision_tower.", "model.audio_tower.")))


def test_save_pretrained_and_load_by_path_like_trl(
    tiny: tuple[OmniForCausalLM, OmniProcessor], tiny_dir: Path, clips: dict[str, Path],
    tmp_path: Path
) -> None:
    from transformers import AutoConfig, AutoModelForCausalLM

    model, processor = tiny
    batch = processor([processor.prompt()], videos=[clips["happiness"]])
    ref = AutoModelForCausalLM.from_pretrained(tiny_dir)  # how TRL builds its reference model
    assert isinstance(ref, OmniForCausalLM)
    assert isinstance(AutoConfig.from_pretrained(tiny_dir), OmniConfig)
    torch.testing.assert_close(_logits(ref, batch), _logits(model, batch))
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    again, proc2 = load_omni(tmp_path)
    assert proc2.settings() == processor.settings()
    torch.testing.assert_close(_logits(again, batch), _logits(model, batch))


def _release_dir(root: Path, model: OmniForCausalLM, processor: OmniProcessor, *,
                 with_towers: bool) -> dict[str, torch.Tensor]:
    """A HumanOmni-format directory: release config keys, weight names and tower dirs."""
    towers = {"siglip": root / "siglip-base-patch16-224", "whisper": root / "whisper-large-v3",
              "bert": root / "bert-base-uncased"}
    inner = model.model
    inner.vision_tower.vision_tower.save_pretrained(towers["siglip"])
    inner.audio_tower.audio_tower.save_pretrained(towers["whisper"])
    inner.bert_model.save_pretrained(towers["bert"])
    processor.gate_tokenizer.save_pretrained(towers["bert"])
    cfg = model.config
    config = {
        **RELEASE_0_5B,
        "hidden_size": cfg.hidden_size, "intermediate_size": cfg.intermediate_size,
        "num_attention_heads": cfg.num_attention_heads, "num_hidden_layers": cfg.num_hidden_layers,
        "num_key_value_heads": cfg.num_key_value_heads, "vocab_size": cfg.vocab_size,
        "max_window_layers": cfg.num_hidden_layers, "mm_hidden_size": 32, "audio_hidden_size": 32,
        "bos_token_id": None, "eos_token_id": processor.eos_token_id, "torch_dtype": "float32",
        "mm_vision_tower": str(towers["siglip"]), "mm_audio_tower": str(towers["whisper"]),
        "text_model_path": str(towers["bert"]),
    }
    out = root / "HumanOmni-tiny"
    out.mkdir()
    (out / "config.json").write_text(json.dumps(config, indent=2))
    processor.tokenizer.save_pretrained(out)
    # Build the release-shaped model (its text gate MLP is 3584 wide) and write its
    # weights under the release's names: SigLIP's under vision_model., lm_head tied.
    torch.manual_seed(1)
    release_model = OmniForCausalLM(OmniConfig.from_pretrained(out))
    weights = {}
    for name, tensor in release_model.state_dict().items():
        if name == "lm_head.weight":
            continue
        name = name.replace("model.vision_tower.vision_tower.",
                            "model.vision_tower.vision_tower.vision_model.")
        if not with_towers and name.startswith(("model.vision_tower.", "model.audio_tower.",
                                                "model.bert_model.")):
            continue
        weights[name] = tensor.contiguous()
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
    return weights


RELEASE_NAMES = {
    "model.embed_tokens.weight": None,
    "model.layers.1.self_attn.q_proj.weight": None,
    "model.vision_tower.vision_tower.vision_model.encoder.layers.0.self_attn.q_proj.weight": None,
    "model.vision_tower.vision_tower.vision_model.head.probe": None,
    "model.mm_projector.s1_video.b1.conv2.conv.weight": (64, 1, 3, 3),  # depth-wise 3x3
    "model.mm_projector.s1_video.b1.se.fc1.weight": (8, 64, 1, 1),  # se = in_chs / 4
    "model.mm_projector.s1_video.b1.downsample.conv.weight": (64, 32, 1, 1),
    "model.mm_projector.sampler_body.0.weight": (64, 64, 2, 2, 2),
    "model.mm_projector.readout_video.2.weight": (64, 64),
    "model.mm_projector.mlp_2xgelu_face.0.weight": (64, 32),
    "model.bert_model.encoder.layer.0.attention.self.query.weight": None,
    "model.bert_model.pooler.dense.weight": None,
    "model.bert_gate.0.weight": (3584, 32),
    "model.bert_gate.2.weight": (3, 3584),
    "model.audio_tower.audio_tower.encoder.layers.0.fc1.weight": None,
    "model.audio_tower.audio_tower.classifier.weight": None,
    "model.audio_projector.0.weight": (64, 32),
    "model.audio_projector.2.weight": (64, 64),
}


def test_humanomni_checkpoint_dir_loads_without_missing_or_unexpected_keys(
    tiny: tuple[OmniForCausalLM, OmniProcessor], clips: dict[str, Path], tmp_path: Path
) -> None:
    weights = _release_dir(tmp_path, *tiny, with_towers=True)
    for name, shape in RELEASE_NAMES.items():
        assert name in weights, name
        assert shape is None or tuple(weights[name].shape) == shape, name
    path = tmp_path / "HumanOmni-tiny"
    model, info = OmniForCausalLM.from_pretrained(path, output_loading_info=True)
    assert (info["missing_keys"], info["unexpected_keys"], info["mismatched_keys"]) == (
        set(), set(), set())
    loaded = model.state_dict()
    for name, tensor in weights.items():
        ours = name.replace("vision_tower.vision_model.", "vision_tower.")
        assert torch.equal(loaded[ours], tensor), name
    model, processor = load_omni(path)
    assert (processor.num_video_tokens, processor.num_audio_tokens) == (32, 33)
    assert model.config.video_placeholder_id == processor.video_token_id == -201
    batch = processor([processor.prompt(EMOTION_QUESTION)], videos=[clips["happiness"]])
    assert model.generate(**batch, max_new_tokens=2, do_sample=False).shape[1] == (
        batch["input_ids"].shape[1] + 2)


def test_release_checkpoint_without_encoders_takes_them_from_their_dirs(
    tiny: tuple[OmniForCausalLM, OmniProcessor], tmp_path: Path
) -> None:
    source, processor = tiny
    _release_dir(tmp_path, source, processor, with_towers=False)
    model, _ = load_omni(tmp_path / "HumanOmni-tiny")
    for ours, theirs in ((model.model.vision_tower, source.model.vision_tower),
                         (model.model.audio_tower, source.model.audio_tower),
                         (model.model.bert_model, source.model.bert_model)):
        for (name, a), (_, b) in zip(ours.state_dict().items(), theirs.state_dict().items(),
                                     strict=True):
            assert torch.equal(a, b), name
    broken = tmp_path / "HumanOmni-tiny" / "config.json"
    config = json.loads(broken.read_text())
    broken.write_text(json.dumps({**config, "mm_audio_tower": str(tmp_path / "nowhere")}))
    with pytest.raises(ErvError, match=r"lacks model\.audio_tower\.audio_tower\.\* weights"):
        load_omni(tmp_path / "HumanOmni-tiny")


def test_model_plugin_builds_and_loads_the_tiny_model(tiny_dir: Path, tmp_path: Path) -> None:
    from erv_plugins.models.builtin import OmniOptions
    from erv_plugins.plugins import get_plugins

    reg = get_plugins().get("model", "omni")
    assert reg.options is OmniOptions
    policy = reg.build(OmniOptions(tiny=True, tiny_dir=str(tiny_dir)))
    assert policy.model_path() == str(tiny_dir)
    model, processor = policy.load()
    assert isinstance(model, OmniForCausalLM) and isinstance(processor, OmniProcessor)
    with pytest.raises(ErvError, match="give a checkpoint `path`, or set options.tiny"):
        reg.build(OmniOptions()).model_path()
    assert load_file(str(tiny_dir / "model.safetensors"))  # a real safetensors file


@pytest.mark.slow
def test_paper_sizes_run_end_to_end_at_full_width() -> None:
    """HumanOmni-0.5B widths (Qwen2 896, SigLIP-base 224 px, Whisper-large-v3 1280 x 128
    mels x 30 s, BERT 768, gate 3584) with one or two layers each: 392 + 500 features."""
    config = OmniConfig.from_dict({
        **RELEASE_0_5B, "num_hidden_layers": 1, "vocab_size": 1024, "bos_token_id": None,
        "eos_token_id": 2,
    })
    config.vision_config.num_hidden_layers = 2
    config.audio_config.encoder_layers = 1
    config.text_gate_config.num_hidden_layers = 1
    torch.manual_seed(0)
    model = OmniForCausalLM(config).eval()
    videos = torch.randn(1, 8, 3, 224, 224)
    audios = torch.randn(1, 128, 3000)
    gate = torch.tensor([[101, 2054, 7603, 102]])
    with torch.no_grad():
        assert tuple(model.encode_videos(videos, gate).shape) == (1, 392, 896)
        assert tuple(model.encode_audios(audios).shape) == (1, 500, 896)
        ids = torch.tensor([[5, 6] + [-201] * 392 + [7] + [-202] * 500 + [8, 9]])
        out = model(input_ids=ids, videos=videos, audios=audios, gate_input_ids=gate)
    assert tuple(out.logits.shape) == (1, 897, 1024)
    assert bool(torch.isfinite(out.logits).all())


def test_visual_projector_stages_equal_timm_regstage() -> None:
    """The release builds its projector from timm's RegStage; ours has its names and maths."""
    timm_regnet = pytest.importorskip("timm.models.regnet")
    from timm.layers import LayerNorm2d

    from erv_plugins.models.omni.modelling import _RegStage

    torch.manual_seed(0)
    for depth, cin, cout in [(2, 32, 64), (2, 64, 64)]:
        ref = timm_regnet.RegStage(depth=depth, in_chs=cin, out_chs=cout, stride=1, dilation=1,
                                   act_layer=torch.nn.SiLU, norm_layer=LayerNorm2d)
        ours = _RegStage(depth, cin, cout)
        assert {k: v.shape for k, v in ours.state_dict().items()} == {
            k: v.shape for k, v in ref.state_dict().items()}
        weights = {k: torch.randn_like(v) * 0.2 for k, v in ref.state_dict().items()}
        ref.load_state_dict(weights)
        ours.load_state_dict(weights)
        x = torch.randn(3, cin, 7, 7)
        torch.testing.assert_close(ours(x), ref(x))


def test_processor_accepts_trls_calling_convention(
    tiny: tuple[OmniForCausalLM, OmniProcessor]
) -> None:
    _, processor = tiny
    prompt = processor.prompt()
    video, audio = torch.zeros(8, 3, 32, 32), torch.zeros(16, 198)
    batch = processor(text=[prompt], videos=[video], audios=[audio], return_tensors="pt",
                      padding=True, padding_side="left", add_special_tokens=False)
    assert batch["input_ids"].shape == (1, len(processor.tokenize(prompt)))
    assert processor.release_length(processor.tokenize(prompt)) == len(processor.tokenize(prompt)) - 31 - 32
    with pytest.raises(ErvError, match=r"prompts \[0\] are longer than max_length=20 tokens"):
        processor(text=[prompt], videos=[video], audios=[audio], truncation=True, max_length=20)
    assert (processor.pad_token, processor.eos_token) == ("<|endoftext|>", "<|im_end|>")


@pytest.mark.slow
def test_tiny_model_learns_the_emotion_of_held_out_synthetic_clips(
    tiny_dir: Path, tmp_path: Path
) -> None:
    """The synthetic clips carry a learnable signal: 40 steps of answer-only training and
    the tiny model ranks the right label first for clips it never saw (chance: 1/3)."""
    from erv_plugins.datasets.synthetic import write_synthetic

    words = ["happiness", "sadness", "anger"]
    syn = write_synthetic(tmp_path, 4, labels=words, layouts=(), seed=0)
    model, processor = load_omni(tiny_dir)
    media = {c.id: processor.load_clip(c.path) for c in syn.clips}
    prompt = processor.prompt()
    n_prompt = len(processor.tokenize(prompt))

    def batch(clips: list[Any], answers: list[str]) -> tuple[Any, torch.Tensor]:
        texts = [f"{prompt}<answer>{a}</answer><|im_end|>" for a in answers]
        b = processor(texts, videos=[media[c.id][0] for c in clips],
                      audios=[media[c.id][1] for c in clips], padding_side="right")
        labels = b["input_ids"].masked_fill(b["attention_mask"] == 0, -100)
        labels[:, :n_prompt] = -100
        return b, labels

    def predict(clips: list[Any]) -> list[str]:
        scores = []
        with torch.no_grad():
            for word in words:
                b, labels = batch(clips, [word] * len(clips))
                logp = torch.log_softmax(model(**b).logits[:, :-1], -1)
                # Placeholder ids are negative: gather a valid id there (masked below).
                logp = logp.gather(-1, b["input_ids"][:, 1:, None].clamp(min=0)).squeeze(-1)
                scores.append((logp * (labels[:, 1:] != -100)).sum(1))
        return [words[i] for i in torch.stack(scores, 1).argmax(1).tolist()]

    train = [c for c in syn.clips if c.split == "train"]
    test = [c for c in syn.clips if c.split == "test"]
    assert len(set(predict(test))) == 1  # untrained: one answer for every clip
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    model.train()
    inputs, labels = batch(train, [c.label for c in train])
    for _ in range(40):
        model(**inputs, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    assert predict(test) == [c.label for c in test] == words


def test_a_batch_may_mix_clips_and_text_only_prompts(
    tiny: tuple[OmniForCausalLM, OmniProcessor], clips: dict[str, Path]
) -> None:
    model, processor = tiny
    mixed = processor([processor.prompt(), processor.prompt("Hi?", video=False, audio=False)],
                      videos=[clips["sadness"]])
    assert tuple(mixed["videos"].shape)[0] == tuple(mixed["gate_input_ids"].shape)[0] == 1
    alone = processor([processor.prompt()], videos=[clips["sadness"]])
    with torch.no_grad():
        both = model(**mixed).logits
        single = model(**alone).logits
    # Row 0 is left-padded in the mixed batch only where it is shorter; it is the longest.
    torch.testing.assert_close(both[0, -1], single[0, -1], rtol=1e-4, atol=1e-4)


def test_load_omni_in_bfloat16(tiny_dir: Path) -> None:
    model, processor = load_omni(tiny_dir, dtype="bfloat16")
    assert model.model.vision_tower.vision_tower.dtype == torch.bfloat16
    batch = processor([processor.prompt()], videos=[torch.zeros(8, 3, 32, 32)],
                      audios=[torch.zeros(16, 198)])
    with torch.no_grad():
        assert model(**batch).logits.dtype == torch.bfloat16
    with pytest.raises(ErvError, match="dtype 'float99' is not a torch dtype"):
        load_omni(tiny_dir, dtype="float99")
