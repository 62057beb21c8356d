"""Language "auto": typed text identified by its script (and romanised Hindi by its words)."""

import pytest

from samvad.language import choose, detect_text
from samvad.settings import load_settings

pytestmark = pytest.mark.unit
KNOWN = load_settings().languages


@pytest.mark.parametrize(
    "text, language, romanised",
    [
        ("How do I block my lost debit card?", "en-IN", False),
        ("मेरा डेबिट कार्ड खो गया है, ब्लॉक कैसे करूँ?", "hi-IN", False),
        ("mera debit card kho gaya hai, block kaise karu?", "hi-IN", True),
        ("என் டெபிட் கார்டு தொலைந்துவிட்டது", "ta-IN", False),
        ("আমার কার্ড হারিয়ে গেছে", "bn-IN", False),
        ("నా కార్డు పోయింది", "te-IN", False),
        ("UPI limit kitni hai per day?", "hi-IN", True),
        ("Is there a charge for a cheque book?", "en-IN", False),
        ("What is the limit for the card and the PIN?", "en-IN", False),
        ("Is the branch open on the weekend?", "en-IN", False),
    ],
)
def test_text_is_identified_by_its_script_and_words(text, language, romanised):
    code, confidence, roman = detect_text(text)
    assert (code, roman) == (language, romanised) and confidence >= 0.6


def test_devanagari_stays_marathi_in_a_marathi_conversation_and_unsure_falls_back():
    assert detect_text("माझे कार्ड हरवले आहे", fallback="mr-IN")[0] == "mr-IN"
    assert choose("hi-IN", 0.97, "en-IN", KNOWN, 0.6) == "hi-IN"
    assert choose("hi-IN", 0.4, "ta-IN", KNOWN, 0.6) == "ta-IN"  # not sure enough: the conversation's language
    assert choose("fr-FR", 0.99, "en-IN", KNOWN, 0.6) == "en-IN"  # not one of ours
    assert detect_text("12345 ???")[0] is None
