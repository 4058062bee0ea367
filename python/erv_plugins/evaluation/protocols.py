"""Evaluation protocols: how one prediction becomes the ground truth g, the answer p, the
judge's input and, once the judge has replied, the judge label j (paper section 4.2).

Three protocols, named in ``[eval] protocol`` and ``erv eval --protocol`` (docs/fidelity.md
has the table of every difference):

``release``
    The authors' evaluation scripts (GitHub Rhatanii/ERV) bit for bit. Table 1's numbers
    came from them, so every recipe that compares with Table 1 uses this one.

    * The prediction is the line ``id|completion`` their ``eval_shard.py`` writes (the
      completion stripped, as ``mm_infer`` returns it), read back as ``rearrange_one_line``
      does: every line stripped and the lines joined with one space (a continuation line
      that itself starts with ``<digits>|`` would begin another sample there: the text is
      cut at it, and the sample is counted in ``release_cut``).
    * Judge input (``tools/response_gpt_check.py``): in the text between the first and the
      second ``|``, what follows the first ``<think>`` up to the next ``</think>``,
      stripped; empty without ``<think>``. The label list goes to the judge in the
      dataset's fixed order. The reply counts verbatim: one that is not exactly a label,
      or a failed request (their helper returns ``'None'``), is neutral and stays in N.
    * EEA, FCR, EPC (``tools/compare/compare_reason-recognition.py``): the answer is what
      follows the first ``<answer>`` in that same ``|`` field, up to ``</answer>`` (or the
      field's end), stripped, through the dataset's normaliser, which rejects a word
      outside the list; a sample without ``<answer>`` there, or with a rejected answer,
      counts as wrong and as incoherent, whatever the judge said (j = ``UNJUDGED``).
    * WAR, UAR (``eval_score.py``, ``count_emotion_DFEW`` / ``count_emotion_MAFW`` in
      ``utils_main.py``): the answer is read from the whole line: after the first
      ``<answer>`` up to ``</answer>`` or the end of the line; without ``<answer>``, the
      text before ``<|im_end|>`` (DFEW; MAFW cuts at the first ``<``), else the whole
      field. An answer the normaliser rejects is wrong. UAR averages the recall of every
      class of the list (a class without samples adds 0); DFEW counts a rejected answer
      in its class's denominator, MAFW leaves it out.

``paper``
    The paper's text where it speaks, the release where it is silent: the judge sees the
    label list in a fresh order for each sample (Figure 3: "a permutation of the GT
    emotion label"), and UAR is the usual mean recall over the classes present, a
    rejected answer being a miss in both datasets. Everything else as ``release``.

``erv``
    erv's own robust protocol: the explanation is the first ``<think>`` block of the
    completion, the answer its first ``<answer>`` (else the whole completion) through the
    dataset's tolerant normaliser; the list is permuted per sample; the reply matches up
    to case, whitespace, quotes and punctuation; a failed request is left out of N (and
    asked again on the next run).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal, get_args

from erv_plugins.errors import ErvError
from erv_plugins.labels import NEUTRAL, LabelSpace, release_dfew, release_mafw

ProtocolName = Literal["release", "paper", "erv"]
PROTOCOLS: tuple[str, ...] = get_args(ProtocolName)

_NORMALISERS = {"dfew": release_dfew, "mafw": release_mafw}
_ANSWER_TO_END = re.compile(r"<answer>(.*?)$")


@dataclass(frozen=True)
class Parsed:
    """The judge-independent reading of one prediction under a protocol."""

    explanation: str  # what the judge reads
    answer: str | None  # p for WAR / UAR (None: rejected by the normaliser)
    answer_judged: str | None  # p for FCR / EPC (None: the sample counts as wrong)
    judged: bool = True  # False: EEA/FCR/EPC count the sample as wrong whatever j is
    cut: bool = False  # release: the text was cut at a line that looks like another sample


def release_line(sample_id: str, completion: str) -> tuple[str, bool]:
    """The sample's line as the release's ``rearrange_one_line`` reads it back from the
    output file ``eval_shard.py`` writes; and whether a continuation line cut it short."""
    record = f"{sample_id}|{completion.strip()}\n"
    # Text mode with universal newlines: \r\n and \r read as \n; readlines splits on \n.
    lines = record.replace("\r\n", "\n").replace("\r", "\n").split("\n")[:-1]
    current = ""
    cut = False
    for number, line in enumerate(lines):
        if number and line.strip() and line.split("|")[0].isdigit():
            cut = True  # the release starts another sample here
            break
        current = line.strip() if number == 0 else current + " " + line.strip()
    return current.strip(), cut


def _strict(space: LabelSpace, word: str) -> str | None:
    """The release's ``match_emotion_key_*`` of ``utils_main.py``: normalise, then reject a
    word outside the dataset's list (None)."""
    normalise = _NORMALISERS.get(space.name)
    word = normalise(word) if normalise is not None else word.lower().replace("\n", "")
    return word if word in space.labels else None


def _release_parse(sample_id: str, completion: str, space: LabelSpace) -> Parsed:
    line, cut = release_line(sample_id, completion)
    field = line.split("|")[1] if "|" in line else ""
    # Judge input: response_gpt_check.order_R1Omni_result.
    pieces = field.split("<think>")
    explanation = pieces[1].split("</think>")[0].strip() if len(pieces) > 1 else ""
    # EEA/FCR/EPC: compare_reason-recognition.py (an IndexError or a ValueError there
    # files the sample under R1-False/GPT-False).
    answer_judged = None
    if "<answer>" in field:
        answer_judged = _strict(space, field.split("<answer>")[1].split("</answer>")[0].strip())
    # WAR/UAR: count_emotion_DFEW / count_emotion_MAFW on the whole line.
    if "<answer>" in line:
        if space.name == "dfew" and "</answer>" not in line:
            m = _ANSWER_TO_END.search(line)
            raw = m.group(1).strip() if m else ""
        else:
            raw = line.split("<answer>")[1].split("</answer>")[0].strip()
    elif "<|im_end|>" in line:
        cut_at = "<|im_end|>" if space.name == "dfew" else "<"
        raw = field.split(cut_at)[0].strip()
    else:
        raw = field.strip()
    return Parsed(explanation, _strict(space, raw), answer_judged,
                  judged=answer_judged is not None, cut=cut)


def _erv_parse(completion: str, think: str | None, answer: str | None,
               space: LabelSpace) -> Parsed:
    text = answer if answer is not None else completion.strip()
    word = space.normalize(text)
    p = word if word in space else None
    return Parsed(think or "", p, p)


def parse_prediction(protocol: str, sample_id: str, completion: str, space: LabelSpace, *,
                     think: str | None = None, answer: str | None = None) -> Parsed:
    """``Parsed`` of one prediction; ``think``/``answer`` are erv's own parse of the
    completion (first ``<think>`` block, first ``<answer>``), used by the ``erv`` protocol."""
    if protocol == "erv":
        return _erv_parse(completion, think, answer, space)
    if protocol in ("release", "paper"):
        return _release_parse(sample_id, completion, space)
    raise ErvError(f"unknown evaluation protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")


# How the authors' judge asks (tools/utils.py): `model` and `messages` only, so the server's
# temperature and length; a 20 s timeout; openai-python's default client, which retries a
# transient failure (connection, timeout, 408/409/429, 5xx) twice before the helper returns
# 'None'. The paper states no decoding, so it keeps the server's too, with erv's retries.
_JUDGE_REQUESTS: dict[str, dict[str, Any]] = {
    "release": {"server_defaults": True, "timeout_s": 20.0, "retries": 2},
    "paper": {"server_defaults": True},
}


def judge_request_defaults(protocol: str, judge: str, options: Any) -> Any:
    """An openai judge's ``options`` (a raw dict) with what ``protocol`` says about the
    request filled in where the user said nothing; other judges' options as given."""
    if judge != "openai" or not (options is None or isinstance(options, dict)):
        return options
    return {**_JUDGE_REQUESTS.get(protocol, {}), **(options or {})}


def judge_order(protocol: str, space: LabelSpace) -> tuple[str, ...] | None:
    """The order of the label list in the judge prompt: the dataset's own, fixed (release),
    or None, the judge's seeded permutation per sample (paper, erv)."""
    return tuple(space.labels) if protocol == "release" else None


def judge_label(protocol: str, row: dict[str, Any], space: LabelSpace) -> str | None:
    """j of one judged row: a label, or None when the row leaves N (erv: a failed request).

    ``row`` holds what the judge said: ``judge_ok``, ``judge_reply`` (verbatim) and
    ``judge_label`` (the judge's own, tolerant reading).
    """
    if not row.get("judge_ok", True):
        return None if protocol == "erv" else NEUTRAL
    if protocol == "erv":
        return row["judge_label"]
    reply = row.get("judge_reply")
    if reply is None:  # a judge that gives labels, not replies (e.g. the verifier judge)
        return row["judge_label"]
    return reply if reply in space.labels else NEUTRAL


def uar_rule(protocol: str, space: LabelSpace) -> str:
    if protocol == "release":
        return "all_known" if space.name == "mafw" else "all"
    return "present"
