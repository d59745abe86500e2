"""VRRPv3 state machine (RFC 5798 §6.4) with an injected clock: no network."""

from appliance.standby.vrrp.state import (
    ClaimVip,
    Event,
    Received,
    ReleaseVip,
    SendAdvert,
    VrrpConfig,
    VrrpInstance,
    VrrpState,
)

NS = 10**9
MS = 10**6


def backup(priority=50, advert_cs=100, preempt=True):
    v = VrrpInstance(
        VrrpConfig(vrid=20, priority=priority, advert_int_cs=advert_cs, preempt=preempt, local_ip="198.18.0.3")
    )
    assert v.handle(Event.STARTUP, 0) == [] and v.state is VrrpState.BACKUP
    return v


def test_timers_follow_rfc_5798():
    v = backup(priority=50)
    assert v.skew_time() == (256 - 50) * NS // 256  # 0.8047 s at 1 s adverts
    assert v.master_down_interval() == 3 * NS + v.skew_time()
    assert v.deadline == v.master_down_interval()
    fast = backup(priority=50, advert_cs=10)
    assert fast.master_down_interval() == 3 * NS // 10 + (206 * NS // 10) // 256


def test_master_adverts_hold_backup_until_they_stop():
    v = backup()
    t = 0
    for _ in range(10):  # the primary advertises every second
        t += NS
        assert v.handle(Event.TIMER, t) == []
        v.handle(Event.ADVERT, t, Received("198.18.0.2", 100, 100))
    assert v.state is VrrpState.BACKUP and v.master_ip == "198.18.0.2"
    assert v.handle(Event.TIMER, t + v.master_down_interval() - 1) == []
    acts = v.handle(Event.TIMER, t + v.master_down_interval())
    assert acts == [SendAdvert(50), ClaimVip()] and v.state is VrrpState.MASTER
    assert v.deadline == t + v.master_down_interval() + NS  # Adver_Timer armed


def test_priority_zero_means_skew_time():
    v = backup()
    v.handle(Event.ADVERT, 5 * NS, Received("198.18.0.2", 0, 100))
    assert v.deadline == 5 * NS + v.skew_time()


def test_preempt_discards_lower_priority_and_nopreempt_accepts_it():
    v = backup(priority=120)
    v.handle(Event.ADVERT, NS, Received("198.18.0.2", 100, 100))
    assert v.deadline == 0 + v.master_down_interval()  # discarded: not re-armed
    n = backup(priority=120, preempt=False)
    n.handle(Event.ADVERT, NS, Received("198.18.0.2", 100, 100))
    assert n.deadline == NS + n.master_down_interval()


def test_master_steps_down_for_higher_priority_and_answers_priority_zero():
    v = backup()
    v.handle(Event.TIMER, v.deadline)
    assert v.state is VrrpState.MASTER
    assert v.handle(Event.ADVERT, 10 * NS, Received("198.18.0.2", 0, 100)) == [SendAdvert(50)]
    assert v.handle(Event.ADVERT, 11 * NS, Received("198.18.0.2", 40, 100)) == []  # lower: ignore
    assert v.handle(Event.ADVERT, 12 * NS, Received("198.18.0.9", 50, 100)) == [ReleaseVip()]  # tie, higher IP
    assert v.state is VrrpState.BACKUP and v.deadline == 12 * NS + v.master_down_interval()


def test_backup_learns_the_advert_interval_it_hears_within_half_to_twice_its_own():
    v = backup()
    v.handle(Event.ADVERT, NS, Received("198.18.0.2", 100, 80))  # a master at 800 ms
    assert v.deadline == NS + 3 * 8 * NS // 10 + (206 * 8 * NS // 10) // 256
    v.handle(Event.ADVERT, 2 * NS, Received("198.18.0.2", 100, 10))  # 100 ms: held at 500 ms
    assert v.master_adver_int_cs == 50
    v.handle(Event.ADVERT, 3 * NS, Received("198.18.0.2", 255, 4095))  # a forged 40.95 s: held at 2 s
    assert v.master_adver_int_cs == 200 and v.deadline == 3 * NS + 6 * NS + (206 * 2 * NS) // 256


def test_while_the_primary_is_dead_a_master_keeps_the_vip_whatever_an_advert_says():
    v = backup()
    v.handle(Event.PRIMARY_DEAD, NS)
    for src, prio in (("198.18.0.2", 255), ("203.0.113.66", 255), ("198.18.0.2", 254)):
        assert v.handle(Event.ADVERT, 2 * NS, Received(src, prio, 4095)) == []
    assert v.state is VrrpState.MASTER and v.conflicts == 2 and "255 from 203.0.113.66" in v.last_conflict
    v.handle(Event.PRIMARY_ALIVE, 3 * NS)  # the probes, not the adverts, hand it back
    assert v.state is VrrpState.BACKUP


def test_a_backup_with_the_primary_dead_takes_over_by_its_own_down_interval():
    v = VrrpInstance(VrrpConfig(vrid=20, priority=50, local_ip="198.18.0.3"))
    v.handle(Event.PRIMARY_DEAD, 0)  # the probes judged it before VRRP started
    v.handle(Event.STARTUP, 0)
    local = v.master_down_interval()
    t = 0
    while v.state is VrrpState.BACKUP:  # forged or stale adverts every 0.5 s: priority 255, 40.95 s
        t += NS // 2
        v.handle(Event.ADVERT, t, Received("198.18.0.2", 255, 4095))
        v.handle(Event.TIMER, t)
    assert v.state is VrrpState.MASTER and t <= local + NS // 2


def test_a_priority_zero_advert_from_the_master_still_means_skew_time():
    v = backup()
    v.handle(Event.ADVERT, NS, Received("198.18.0.2", 0, 100))
    assert v.deadline == NS + v.skew_time()


def test_health_policy_takeover_and_handback():
    v = backup()
    acts = v.handle(Event.PRIMARY_DEAD, 7 * NS)
    assert acts == [SendAdvert(254), ClaimVip()] and v.state is VrrpState.MASTER
    assert v.handle(Event.TIMER, 8 * NS) == [SendAdvert(254)]
    # the primary's keepalived, still alive, is outranked and stays backup: its adverts do not move us
    assert v.handle(Event.ADVERT, 8 * NS, Received("198.18.0.2", 100, 100)) == []
    acts = v.handle(Event.PRIMARY_ALIVE, 20 * NS)
    assert acts == [SendAdvert(0), ReleaseVip()] and v.state is VrrpState.BACKUP and v.priority == 50
    assert [t[3] for t in v.transitions] == ["startup", "primary dead (health probes)", "primary alive again"]


def test_shutdown_releases_with_priority_zero():
    v = backup()
    v.handle(Event.TIMER, v.deadline)
    assert v.handle(Event.SHUTDOWN, 30 * NS) == [SendAdvert(0), ReleaseVip()]
    assert v.state is VrrpState.INITIALIZE and v.deadline is None


def test_owner_priority_255_starts_as_master():
    v = VrrpInstance(VrrpConfig(vrid=1, priority=255, local_ip="198.18.0.3"))
    assert v.handle(Event.STARTUP, 0) == [SendAdvert(255), ClaimVip()] and v.state is VrrpState.MASTER
