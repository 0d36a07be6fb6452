"""SmsEvents: each provider callback handed to the sink once, messages and reports alike."""

from __future__ import annotations

from gateway.bridge.sms.inbound import Received, SmsEvents
from gateway.channels import Inbound, Signal, UpdateKey
from tests.fakes import RecordingSink

MESSAGE = Received(Inbound("sms", "+15005550006", "+14155552671", text="Привет"), key="SMa")
REPORT = Received(Signal("delivered", "sms", "+15005550006", external_id="SMb"), key="SMb:1")


async def test_a_resent_message_is_stored_once_with_its_key() -> None:
    sink = RecordingSink()
    events = SmsEvents(sink, "sms.twilio")
    await events.hand_over([MESSAGE])
    await SmsEvents(sink, "sms.twilio").hand_over([MESSAGE])  # resent after a restart
    [stored] = sink.inbounds
    assert stored.update == UpdateKey("sms.twilio", "SMa")  # recorded in the same transaction


async def test_a_resent_status_report_is_applied_once() -> None:
    sink = RecordingSink()
    await SmsEvents(sink, "sms.twilio").hand_over([REPORT])
    await SmsEvents(sink, "sms.twilio").hand_over([REPORT])
    assert sink.signals == [REPORT.item]
    assert sink.seen_keys == {("sms.twilio", "SMb:1")}
