"""Response protection (ARCHITECTURE §2.10): JSON redaction and error-page leak masking. Sans-IO."""

from garrison.dlp.cards import CARD_RUN, is_card, luhn_valid, mask_card, redact_cards
from garrison.dlp.leaks import SIGNATURES, LeakDetector
from garrison.dlp.models import DlpConfig
from garrison.dlp.redact import Redactor

__all__ = [
    "CARD_RUN",
    "SIGNATURES",
    "DlpConfig",
    "LeakDetector",
    "Redactor",
    "is_card",
    "luhn_valid",
    "mask_card",
    "redact_cards",
]
