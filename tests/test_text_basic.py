from erv_plugins.text import parse_completion, split_sentences


def test_parse_and_split_a_paper_style_completion():
    parsed = parse_completion('<think>He smiles. "Great. Fine" she says! Done</think> <answer>happy</answer>')
    assert parsed.format_ok is True
    assert parsed.answer == "happy"
    assert split_sentences(parsed.think) == ["He smiles.", '"Great. Fine" she says!', "Done"]
