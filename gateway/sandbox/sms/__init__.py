"""An in-process Twilio: the Messages API chatgate's real Twilio adapter sends through.

Inside: `phones` (each sandbox phone's inbox), `signing` (X-Twilio-Signature as
Twilio computes it), `emulator` (the Messages API, status callbacks and inbound
webhooks) and `control` (the console's JSON endpoints: read a phone, text from it).
"""

from __future__ import annotations

from gateway.sandbox.sms.emulator import TwilioEmulator
from gateway.sandbox.sms.phones import Phone, PhoneBook, Sms
from gateway.sandbox.sms.signing import twilio_signature

__all__ = ["Phone", "PhoneBook", "Sms", "TwilioEmulator", "twilio_signature"]
