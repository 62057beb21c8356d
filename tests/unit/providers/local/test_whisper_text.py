"""What the offline recogniser keeps of a decode, without loading the model."""

import pytest

from samvad.providers.local.whisper import _compresses, _echoes_prompt, _looping

pytestmark = pytest.mark.unit

PROMPT = (
    "Navtara Bank customer support call about debit card, credit card, UPI, KYC, PAN, Aadhaar, nominee, "
    "fixed deposit, home loan, EMI, net banking, ATM and branches."
)


def test_the_prompt_read_back_is_dropped_but_a_caller_naming_its_terms_is_not():
    # What Whisper base read from 60 s of noise at temperature 1.0 (a flaky test caught it).
    assert _echoes_prompt(
        "The bank customer support call about debit card, credit card, UPI, KYC, PAN, Aadhaar, nominee, "
        "fixed deposit, home loan, EMI, net banking, ATM and branches.",
        PROMPT,
    )
    assert _echoes_prompt("fixed deposit, home loan, EMI, net banking, ATM and branches", PROMPT)
    # Read back, then round in a loop (60 s of noise, at temperature 1.0, under a loaded CI run).
    assert _echoes_prompt(
        "The bank customer support call about debit card, credit card, bank, bank, bank, bank.", PROMPT
    )
    assert _echoes_prompt(" Navtara Bank customer support call.", PROMPT)  # its opening alone
    assert _echoes_prompt("The bank customer support", PROMPT)
    assert not _echoes_prompt("Navtara Bank?", PROMPT)
    assert not _echoes_prompt("Is this Navtara Bank customer support?", PROMPT)
    assert not _echoes_prompt("How do I pay my home loan EMI with net banking?", PROMPT)
    assert not _echoes_prompt("My debit card and my credit card were both blocked at the bank, can you help?", PROMPT)
    assert not _echoes_prompt("debit card, credit card, UPI", PROMPT)  # too short to be the prompt
    assert not _echoes_prompt("fixed deposit, home loan, EMI, net banking, ATM and branches", None)


def test_a_decoder_loop_is_recognised():
    assert _looping("Thank you. Thank you. Thank you.")
    assert not _looping("What is the interest rate on a fixed deposit?")
    assert _compresses("debit card, credit card, " + "bank, " * 30)
    assert not _compresses("I lost my debit card yesterday. Please block it and send me a new one to my address.")
    assert not _compresses("Hello? Hello?")  # a caller on a bad line is not a loop
