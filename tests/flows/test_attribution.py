"""Goals and conversions: one per run, credited right, holdouts measured, windows kept."""

from __future__ import annotations

from pathlib import Path

from flows.engine import split_variant
from flows.spec import Split
from storage.db import Database
from tests.flows.engine_world import CART_TEMPLATE, HOUR, OFFER_TEMPLATE, make_world

DAY = 24 * HOUR
AB_FLOW = """\
name: promo_ab
trigger: {event: promo}
goal: {event: purchase, within: 2d}
steps:
  - split: {name: subject, variants: {a: 50, b: 50}, holdout: 50}
  - send: {name: offer, template: {a: offer, b: offer_b}, channels: [telegram]}
"""
TEMPLATES = {"cart": CART_TEMPLATE, "offer": OFFER_TEMPLATE, "offer_b": 'text: "Вариант B"\n'}
KEEP_GOING = """\
name: onboarding
trigger: {event: signed_up}
goal: {event: purchase, within: 1d, exit: false}
steps:
  - send: {name: hello, template: offer, channels: [telegram]}
  - wait: 2d
  - goal: {event: review, within: 1d}
  - send: {name: ask_review, template: offer, channels: [telegram]}
"""


async def test_holdout_gets_nothing_but_its_purchase_is_counted_for_lift(
    database: Database, tmp_path: Path
) -> None:
    world = await make_world(database, tmp_path, templates=TEMPLATES, flows={"ab": AB_FLOW})
    split = Split(0, "subject", {"a": 50, "b": 50}, 50)
    people = [await world.customer(f"c{i}", telegram=str(2000 + i)) for i in range(20)]
    held = next(p for p in people if split_variant("promo_ab", p, split) is None)
    treated = next(p for p in people if split_variant("promo_ab", p, split) is not None)
    for person in (held, treated):
        await world.event(person, "promo")
    assert await world.deliveries(held) == []
    [sent] = await world.deliveries(treated)
    variant = split_variant("promo_ab", treated, split)
    assert sent.payload["text"] == (
        "Вариант B" if variant == "b" else "Скидка 10% для c" + str(people.index(treated))
    )
    [held_run] = await world.runs(held)
    assert (held_run.status, held_run.holdout, held_run.variant) == ("holdout", True, None)
    assert [s.outcome for s in await world.steps(held)] == ["held"]

    await world.advance(DAY)
    await world.event(held, "purchase", {"amount": 100})
    await world.event(treated, "purchase", {"amount": 200})
    by_run = {c.run_id: c for c in await world.conversions()}
    [treated_run] = await world.runs(treated)
    held_conversion = by_run[held_run.id]
    assert (held_conversion.channel, held_conversion.step, held_conversion.delivery_id) == (
        None,
        None,
        None,
    )
    assert by_run[treated_run.id].variant == variant
    assert by_run[treated_run.id].delivery_id == sent.id
    [held_run] = await world.runs(held)
    assert held_run.status == "holdout"  # still the control group, now ended
    assert held_run.ended_at is not None


async def test_a_purchase_after_the_window_is_not_a_conversion(
    database: Database, tmp_path: Path
) -> None:
    world = await make_world(database, tmp_path, templates=TEMPLATES, flows={"ab": AB_FLOW})
    split = Split(0, "subject", {"a": 50, "b": 50}, 50)
    people = [await world.customer(f"c{i}", telegram=str(3000 + i)) for i in range(20)]
    treated = next(p for p in people if split_variant("promo_ab", p, split) is not None)
    await world.event(treated, "promo")
    await world.advance(2 * DAY + 60)
    await world.event(treated, "purchase", {"amount": 1})
    assert await world.conversions() == []


async def test_a_goal_that_does_not_exit_lets_the_run_go_on_and_a_goal_step_reopens(
    database: Database, tmp_path: Path
) -> None:
    world = await make_world(
        database, tmp_path, templates=TEMPLATES, flows={"onboarding": KEEP_GOING}
    )
    ann = await world.customer(telegram="1001")
    await world.event(ann, "signed_up")
    await world.advance(HOUR)
    await world.event(ann, "purchase", {"amount": 10})
    [run] = await world.runs(ann)
    assert run.status == "active"  # exit: false
    assert len(await world.conversions()) == 1
    await world.advance(2 * DAY)
    assert [d.payload["meta"]["step"] for d in await world.deliveries(ann)] == [
        "hello",
        "ask_review",
    ]
    await world.event(ann, "review")  # the run already converted once: no second conversion
    assert len(await world.conversions()) == 1
    [run] = await world.runs(ann)
    assert run.status == "done"
