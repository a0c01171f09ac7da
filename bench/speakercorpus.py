"""Generated calls for speaker counting: every turn a different sentence.

:func:`bench.callcorpus.turn_taking_call` cycles through six lines, so a voice says the same
sentence again and again, and espeak-ng speaks a sentence in one voice identically each time:
the voice encoder then finds one tight cluster per *sentence* (a one-voice call looks like six
"speakers" to any count estimate). Here every turn has its own sentence (up to
``len(CALL_LINES)`` turns), so what clusters is the voice.
"""

from __future__ import annotations

from collections.abc import Sequence

from bench.callcorpus import Samples, Turn, conversation

CALL_LINES = (
    "Thank you for calling, how can I help you today.",
    "I would like to check the status of my order from last week.",
    "Let me look that up for you, it should arrive on Friday.",
    "That is great news, thank you very much for your help.",
    "Is there anything else I can do for you this afternoon.",
    "No, that was everything, have a nice day.",
    "My internet connection keeps dropping every evening.",
    "Have you tried restarting the router in the living room.",
    "Yes, I did that twice yesterday and nothing changed.",
    "I can send a technician to your address on Monday morning.",
    "Monday works for me, what time should I expect them.",
    "Somewhere between nine and twelve, they will call ahead.",
    "I also noticed a strange charge on my last invoice.",
    "That looks like the installation fee, I will refund it.",
    "How long does it take until the money is back.",
    "Usually three to five working days after the refund.",
    "Could you also update the email address on my account.",
    "Of course, please spell the new address for me slowly.",
    "The new plan includes unlimited calls and more data.",
    "I need to speak with my wife before I decide anything.",
    "We have a special offer for customers who stay two years.",
    "Please send me the details in writing by post.",
    "I have written down your case number for future calls.",
    "Thanks again, you have been very patient with me.",
)


OPENERS = ("Well,", "Okay,", "Right,", "Sorry,", "Also,", "So,")


def line(index: int) -> str:
    """Turn ``index``'s sentence: the lines in order, and past the end of :data:`CALL_LINES`
    the same lines after an opener word (another wording, so never the same audio twice)."""
    cycle, at = divmod(index, len(CALL_LINES))
    text = CALL_LINES[at]
    if cycle == 0:
        return text
    return f"{OPENERS[(cycle - 1) % len(OPENERS)]} {text[0].lower()}{text[1:]}"


def distinct_turns_call(n_lines: int, voices: Sequence[str]) -> tuple[Samples, list[Turn]]:
    """``len(voices)`` speakers taking turns in order, a different sentence every turn
    (:func:`line`)."""
    lines = [
        (f"spk{i % len(voices) + 1}", voices[i % len(voices)], line(i)) for i in range(n_lines)
    ]
    return conversation(lines)
