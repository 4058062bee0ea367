"""The released ERV reward loop, re-implemented from its description (docs: REFERENCE.md).

The baseline that ``benchmarks/test_bench_reward.py`` measures erv against. It keeps the
release's shape on purpose: Python ``re`` per completion, every sentence of the batch sent
to the verifier in one padded call (no deduplication, no cache), then a per-sentence loop
of small torch operations. ``classify`` stands for the release's tokenizer + model +
sigmoid so that the non-model part can be timed on its own.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import torch

GOEMOTION_TO_LABEL = {
    "happiness": 17, "anger": 2, "disgust": 11, "fear": 14, "sadness": 25, "surprise": 26,
    "neutral": 27, "anxiety": 19, "helplessness": 16, "disappointment": 9, "contempt": 10,
}


def match_emotion_key_dfew(word: str) -> str:
    if word == "sadness":
        return "sad"
    if "happiness" in word:
        return "happy"
    if "anger" in word:
        return "angry"
    return word


def match_emotion_key_mafw(word: str) -> str:
    exact = {"angry": "anger", "sad": "sadness", "anxious": "anxiety",
             "helpless": "helplessness", "disappointed": "disappointment"}
    if word in exact:
        return exact[word]
    if "happy" in word:
        return "happiness"
    if "contemptuous" in word:
        return "contempt"
    return word


def format_reward(contents: Sequence[str]) -> list[float]:
    pattern = r"<think>.*?</think>\s*<answer>.*?</answer>"
    return [1.0 if re.fullmatch(pattern, c, re.DOTALL) else 0.0 for c in contents]


def accuracy_reward(contents: Sequence[str], solutions: Sequence[str],
                    datasets: Sequence[str]) -> list[float]:
    rewards = []
    for content, sol, dataset in zip(contents, solutions, datasets):
        reward = 0.0
        sol_match = re.search(r"<answer>(.*?)</answer>", sol)
        ground_truth = sol_match.group(1).strip() if sol_match else sol.strip()
        content_match = re.search(r"<answer>(.*?)</answer>", content)
        student = content_match.group(1).strip() if content_match else content.strip()
        if dataset == "mafw":
            student = match_emotion_key_mafw(student)
        elif dataset == "dfew":
            student = match_emotion_key_dfew(student)
        if student == ground_truth:
            reward = 1.0
        rewards.append(reward)
    return rewards


def think_step_reward(contents: Sequence[str], solutions: Sequence[str],
                      classify: Callable[[list[str]], torch.Tensor],
                      threshold: float = 0.1) -> list[float]:
    all_sentences: list[str] = []
    sent2example: list[int] = []
    for cont in contents:
        m = re.search(r"<think>(.*?)</think>", cont, re.DOTALL)
        think_text = m.group(1).strip() if m else ""
        sentences = re.split(r'(?<=[\.!?])\s+(?=(?:[^"]*"[^"]*")*[^"]*$)', think_text)
        sentences = [s for s in sentences if s]
        all_sentences.extend(sentences)
        sent2example.append(len(sentences))

    probs = classify(all_sentences)  # one padded call over every sentence of the batch
    preds = (probs > threshold).int()

    gt_idx_list = []
    for sol in solutions:
        sol_match = re.search(r"<answer>(.*?)</answer>", sol)
        ground_truth = sol_match.group(1).strip() if sol_match else sol.strip()
        gt_idx_list.append(GOEMOTION_TO_LABEL[match_emotion_key_mafw(ground_truth)])

    top_indices_list = []
    for i in range(len(all_sentences)):
        idxs = (preds[i] == 1).nonzero(as_tuple=True)[0].tolist()
        if len(idxs) == 0:
            idxs = [torch.argmax(probs[i]).item()]
        elif len(idxs) > 2:
            idxs = torch.topk(probs[i], k=2).indices.tolist()
        top_indices_list.append(idxs)

    neutral_idx = GOEMOTION_TO_LABEL["neutral"]
    rewards = []
    offset = 0
    for num_sent, gt_idx in zip(sent2example, gt_idx_list):
        para = top_indices_list[offset:offset + num_sent]
        offset += num_sent
        non_neu = sum(not (len(p) == 1 and p[0] == neutral_idx) for p in para)
        match = sum(gt_idx in p for p in para)
        if num_sent == 0:
            rewards.append(0.0)
        elif gt_idx == neutral_idx:
            rewards.append(match / num_sent)
        else:
            rewards.append(match / non_neu if non_neu > 0 else 0.0)
    return rewards


def hf_classifier(tokenizer, model) -> Callable[[list[str]], torch.Tensor]:  # noqa: ANN001
    """The release's verifier call: tokenizer(all sentences, padding, truncation) + sigmoid."""

    device = next(model.parameters()).device

    def classify(sentences: list[str]) -> torch.Tensor:
        inputs = tokenizer(sentences, return_tensors="pt", padding=True, truncation=True)
        inputs = {k: v.to(device) for k, v in inputs.items()}
        with torch.no_grad():
            logits = model(**inputs).logits
        return torch.sigmoid(logits)

    return classify


def release_rewards(contents: Sequence[str], solutions: Sequence[str], datasets: Sequence[str],
                    classify: Callable[[list[str]], torch.Tensor],
                    threshold: float = 0.1) -> dict[str, list[float]]:
    """The three rewards and their equal-weight total, as the release's trainer sums them."""
    out = {
        "format": format_reward(contents),
        "answer": accuracy_reward(contents, solutions, datasets),
        "explanation": think_step_reward(contents, solutions, classify, threshold),
    }
    out["total"] = [a + b + c for a, b, c in zip(out["format"], out["answer"], out["explanation"])]
    return out
