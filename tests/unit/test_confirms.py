"""The bookkeeping of RabbitMQ publisher confirms (app/ledger/runtime/confirms.py): after
any mix of ``basic.ack``/``basic.nack`` (single or ``multiple``) and a lost channel,
which publishes are the broker's, which it refused, which may or may not have arrived."""

from __future__ import annotations

from app.ledger.runtime.confirms import Confirms


def published(*items: str | None) -> Confirms[str]:
    confirms: Confirms[str] = Confirms()
    for item in items:
        confirms.published(item)
    return confirms


def test_publishes_are_numbered_from_one_as_the_broker_numbers_them() -> None:
    confirms: Confirms[str] = Confirms()
    assert [confirms.published(item) for item in ("a", None, "b")] == [1, 2, 3]


def test_an_ack_with_multiple_answers_every_earlier_unanswered_publish() -> None:
    confirms = published("a", None, "b", None, "c", None)
    confirms.answered(4, True, ok=True)
    assert confirms.acked() == {"a", "b"}
    assert confirms.unanswered() == {"c"}
    assert not confirms.complete
    confirms.answered(6, True, ok=True)
    assert (confirms.acked(), confirms.nacked(), confirms.unanswered()) == (
        {"a", "b", "c"},
        set(),
        set(),
    )
    assert confirms.complete


def test_a_single_ack_answers_its_own_publish_only() -> None:
    confirms = published("a", "b", "c")
    confirms.answered(2, False, ok=True)
    assert confirms.acked() == {"b"}
    assert confirms.unanswered() == {"a", "c"}


def test_a_nack_refuses_its_publishes_and_a_later_multiple_ack_does_not_take_them_back() -> None:
    confirms = published("a", "b", "c", "d")
    confirms.answered(1, False, ok=True)
    confirms.answered(3, True, ok=False)  # b and c refused
    confirms.answered(4, True, ok=True)  # covers 1..4: only d was unanswered
    assert confirms.acked() == {"a", "d"}
    assert confirms.nacked() == {"b", "c"}
    assert confirms.unanswered() == set()
    assert confirms.complete


def test_an_answer_given_twice_keeps_the_first() -> None:
    confirms = published("a")
    confirms.answered(1, False, ok=True)
    confirms.answered(1, False, ok=False)
    assert (confirms.acked(), confirms.nacked()) == ({"a"}, set())


def test_acks_out_of_order_then_a_multiple_one_fill_the_gaps() -> None:
    confirms = published("a", "b", "c", "d", "e")
    confirms.answered(4, False, ok=True)
    confirms.answered(2, False, ok=False)
    confirms.answered(5, True, ok=True)
    assert confirms.acked() == {"a", "c", "d", "e"}
    assert confirms.nacked() == {"b"}
    assert confirms.complete


def test_publishes_unanswered_when_the_channel_is_lost_may_have_arrived() -> None:
    """The connection drops after the broker confirmed up to tag 3: the rest are unsure."""
    confirms = published("a", None, "b", None, "c", None, "d", None)
    confirms.answered(3, True, ok=True)
    assert confirms.acked() == {"a", "b"}
    assert confirms.unanswered() == {"c", "d"}
    assert confirms.nacked() == set()
    assert not confirms.complete


def test_nothing_answered_leaves_every_job_unsure_and_events_count_for_no_job() -> None:
    confirms = published(None, "a", None)
    assert confirms.unanswered() == {"a"}
    confirms.answered(3, True, ok=True)
    assert confirms.acked() == {"a"}


def test_an_answer_for_a_tag_never_published_changes_nothing() -> None:
    confirms = published("a", "b")
    confirms.answered(7, False, ok=True)
    assert confirms.unanswered() == {"a", "b"}
    confirms.answered(7, True, ok=True)  # multiple past the end: what was published
    assert confirms.acked() == {"a", "b"}
    assert confirms.complete
    confirms.published("c")
    assert not confirms.complete
    assert confirms.unanswered() == {"c"}


def test_withdrawn_publishes_are_neither_acked_nor_unsure() -> None:
    """The last publishes' frames were never written whole: they are no publishes, so
    the rest can be complete, and they are not counted unanswered."""
    confirms = published("a", "b", "c", "d")
    confirms.answered(2, True, ok=True)
    confirms.withdrawn(2)
    assert confirms.complete
    assert (confirms.acked(), confirms.unanswered()) == ({"a", "b"}, set())
    confirms.withdrawn(0)
    assert confirms.published("e") == 3  # tags go on from the publishes kept


def test_a_channel_that_published_before_numbers_on_from_its_next_tag() -> None:
    """A held channel's second use: its publishes are tags 7 and 8, and the answers to
    the tags before them (a late multiple ack of the first use) are not its own."""
    confirms: Confirms[str] = Confirms(first_tag=7)
    assert [confirms.published(item) for item in ("a", None)] == [7, 8]
    assert confirms.next_tag == 9
    confirms.answered(5, True, ok=False)  # an earlier use's tags: nothing of these
    confirms.answered(6, False, ok=True)
    assert confirms.unanswered() == {"a"}
    assert not confirms.complete
    confirms.answered(8, True, ok=True)  # covers 7 and 8 (and the earlier ones: not ours)
    assert confirms.acked() == {"a"}
    assert confirms.complete


def test_a_nack_on_a_channel_used_before_refuses_only_its_own_tag() -> None:
    confirms: Confirms[str] = Confirms(first_tag=3)
    for item in ("a", "b", None):
        confirms.published(item)
    confirms.answered(4, False, ok=False)
    confirms.answered(5, True, ok=True)
    assert (confirms.acked(), confirms.nacked(), confirms.complete) == ({"a"}, {"b"}, True)


def test_withdrawn_publishes_give_their_tags_back_to_the_channel() -> None:
    confirms: Confirms[str] = Confirms(first_tag=10)
    for item in ("a", "b", "c"):
        confirms.published(item)
    confirms.answered(12, False, ok=True)  # then c is found never written whole
    assert len(confirms) == 3
    confirms.withdrawn(1)
    assert confirms.next_tag == 12
    assert len(confirms) == 2  # this channel's publishes, whatever its first tag
    assert confirms.unanswered() == {"a", "b"}
    confirms.answered(11, True, ok=True)
    assert confirms.complete
    assert confirms.acked() == {"a", "b"}
