"""What a follow-up is searched with, and how the offline answerer answers one."""

import pytest

from samvad.followup import is_follow_up, search_query

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "text",
    [
        "How do I get a replacement for it?",
        "What about the PIN?",
        "And at a branch?",
        "Can I close it early?",
        "What are the charges after that?",
        "Aur agar bhool gaya toh?",
        "Usko pehle tod sakte hain kya?",
        "kitna?",
    ],
)
def test_follow_ups_are_recognised(text):
    assert is_follow_up(text)


@pytest.mark.parametrize(
    "text",
    [
        "How do I recharge my FASTag?",
        "What is Positive Pay?",
        "Is there a charge for a cheque book?",
        "Home loan ke liye kya documents chahiye?",
        "",
    ],
)
def test_questions_that_stand_alone_are_searched_as_they_are(text):
    assert not is_follow_up(text)
    assert search_query(text, ["How do I block my lost debit card?"]) == text


def test_a_follow_up_is_searched_with_the_question_that_named_its_subject():
    assert search_query("What about the PIN?", []) == "What about the PIN?"  # nothing to lean on
    block = "How do I block my lost debit card?"
    assert search_query("What about the PIN?", [block]) == f"{block} What about the PIN?"
    # A chain of follow-ups reaches back to the subject; a new subject starts afresh.
    chain = search_query("And if I type it wrong three times?", [block, "What about the PIN?"])
    assert chain.startswith(block) and "PIN" in chain
    assert (
        search_query("How do I recharge it?", [block, "How do I buy a FASTag?"])
        == "How do I buy a FASTag? How do I recharge it?"
    )


async def test_the_offline_answer_follows_the_conversation(runner):
    from samvad.contracts import ChatMessage
    from samvad.turn import TurnRequest

    async def answer(text: str, history: list) -> str:
        async for event in runner.run(TurnRequest(turn_id="t", text=text, history=history, speak=False)):
            if event.type == "turn.done":
                return event.response.response_text
        raise AssertionError("no turn.done")

    history = []
    for question in ("How do I block my lost debit card?", "What about the PIN?"):
        reply = await answer(question, history)
        history += [ChatMessage(role="user", content=question), ChatMessage(role="assistant", content=reply)]
    first, second = history[1].content, history[3].content
    assert first.lower().startswith("if your") and "block it at once" in first  # the key instruction leads
    assert "PIN" in second and "UPI" not in second, second  # the card's PIN, not the UPI PIN
