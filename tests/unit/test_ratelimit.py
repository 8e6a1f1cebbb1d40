"""The shared Cronofy limiter (GCRA in DynamoDB) against both sliding-window limits, on a fake clock."""

import bisect

import pytest

from calsync.ratelimit import RateLimiter, gcra_parameters
from localdev.memory_dynamodb import MemoryDynamoDB


class Clock:
    def __init__(self):
        self.now = 1_800_000_000.0

    def __call__(self):
        return self.now


@pytest.fixture
def db():
    """The in-memory table (tests/unit runs without moto; tests/integration/test_memory_dynamodb_contract.py
    runs the limiter on both)."""
    client = MemoryDynamoDB()
    client.create_table(TableName="t", BillingMode="PAY_PER_REQUEST",
                        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                              {"AttributeName": "sk", "AttributeType": "S"}],
                        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                   {"AttributeName": "sk", "KeyType": "RANGE"}])
    return client


def max_in_window(times, width):
    return max(bisect.bisect_left(times, t + width - 1e-9) - i for i, t in enumerate(times))


@pytest.mark.parametrize("per_second, per_minute", [(50, 500), (10, 100), (20, 1000)])
def test_greedy_callers_never_exceed_either_limit_and_drain_above_80_percent(db, per_second, per_minute):
    clock = Clock()
    limiter = RateLimiter(db, "t", per_second, per_minute, clock=clock)
    granted = []
    end = clock.now + 75
    while clock.now < end:
        wait = limiter.acquire(1)
        if wait == 0:
            granted.append(clock.now)
        else:
            clock.now += wait
    assert max_in_window(granted, 1.0) <= per_second
    assert max_in_window(granted, 60.0) <= per_minute
    binding = min(per_second * 60, per_minute)
    assert len(granted) / 75 * 60 >= 0.8 * binding  # per minute


def test_a_429_holds_everyone_back(db):
    clock = Clock()
    a = RateLimiter(db, "t", clock=clock)
    b = RateLimiter(db, "t", clock=clock)  # another function, same bucket
    assert a.acquire() == 0
    a.penalize(30)
    wait = b.acquire()
    assert 29 < wait < 40
    clock.now += wait
    assert b.acquire() == 0


def test_parameters_leave_a_margin():
    rate, burst = gcra_parameters(50, 500)
    assert burst + rate <= 50 * 0.95 + 1e-9 and burst + 60 * rate <= 500 * 0.95 + 1e-9


def test_queue_work_keeps_its_share_when_people_keep_asking(db):
    """Issue 10, finding 3: a person's requests cannot use the half of the burst kept for queue work."""
    clock = Clock()
    limiter = RateLimiter(db, "t", 50, 500, clock=clock)
    assert limiter.interactive_burst == limiter.burst - limiter.burst // 2
    # People alone: granted until the bucket is half full, then told to wait
    interactive = 0
    while limiter.acquire(1, priority="interactive") == 0.0:
        interactive += 1
    assert interactive == int(limiter.interactive_burst)
    # Queue work still finds the other half
    queue = 0
    while limiter.acquire(1) == 0.0:
        queue += 1
    assert queue == int(limiter.burst - limiter.interactive_burst)
    # Over 20 sustained seconds of both asking as fast as they can, queue work gets at least its share
    granted = {"queue": 0, "interactive": 0}
    for _ in range(2000):
        clock.now += 0.01
        for priority in ("interactive", "queue"):
            if limiter.acquire(1, priority=priority) == 0.0:
                granted[priority] += 1
    assert granted["queue"] >= granted["interactive"]
    assert granted["queue"] + granted["interactive"] <= limiter.rate * 20 + 1
    with pytest.raises(ValueError):
        limiter.acquire(1, priority="urgent")


def test_a_tiny_burst_serves_both(db):
    limiter = RateLimiter(db, "t", 2, 20, clock=Clock())
    assert limiter.burst == 1 and limiter.interactive_burst == 1  # nothing to split: both may go
    assert limiter.acquire(1, priority="interactive") == 0.0


def test_calendar_writes_go_before_notification_reads_when_the_limit_is_the_bottleneck(db):
    """Issue 11: at the busiest hour the reads behind notifications ("background") wait behind milestone
    pushes ("queue"), which must reach calendars within two minutes."""
    clock = Clock()
    limiter = RateLimiter(db, "t", 50, 500, clock=clock)
    granted = {"queue": 0, "background": 0}
    waits = []
    for _ in range(3000):  # 30 s of both asking as fast as they can, pushes at about half the rate
        clock.now += 0.01
        if limiter.acquire(1, priority="background") == 0.0:
            granted["background"] += 1
        if int(clock.now * 100) % 25 == 0:  # a push every 0.25 s: 4/s of the 7.25/s the limiter passes
            wait = limiter.acquire(1)
            waits.append(wait)
            if wait == 0.0:
                granted["queue"] += 1
    assert max(waits) == 0.0  # no push ever waited: background reads never use the share kept for them
    assert granted["background"] >= (limiter.rate - 4) * 30 * 0.9  # the reads got the rest


def test_patient_work_waits_in_line_behind_writes_where_queue_work_hands_back(db):
    """The reconciler's overdue checks (calsync.cronofy.patient): a wait at the limiter longer than the
    client's own (1 s, then queue work goes back to SQS) is slept, up to the patience given, and at the
    priority of the reads behind notifications, so calendar writes keep their share."""
    from calsync.cronofy import CronofyApp, CronofyRateLimited, patient

    clock = Clock()
    limiter = RateLimiter(db, "t", clock=clock)
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.now += seconds

    app = CronofyApp("id", "secret", "https://api.example", "https://app.example", sleep=sleep, limiter=limiter,
                     max_limiter_wait=1.0)
    limiter.penalize(2.0)  # a 429: nothing for 2 s, then the burst refills from empty
    with pytest.raises(CronofyRateLimited):
        app._take_token("GET", "https://api.example/v1/events")  # queue work: no long waits
    assert slept == []
    with patient(10.0):
        app._take_token("GET", "https://api.example/v1/events")
    # it waited until the bucket was back above the share kept for writes, not merely for one token
    assert sum(slept) > 2.0 + (limiter.burst - limiter.interactive_burst) / limiter.rate
    assert limiter.acquire(1, "queue") == 0.0  # what the writes' share kept is still theirs
    limiter.penalize(2.0)
    with patient(0.5), pytest.raises(CronofyRateLimited):
        app._take_token("GET", "https://api.example/v1/events")
