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


def test_master_learns_the_advert_interval_it_hears():
    v = backup()
    v.handle(Event.ADVERT, NS, Received("198.18.0.2", 100, 10))  # a fast master (100 ms)
    assert v.deadline == NS + 3 * NS // 10 + (206 * NS // 10) // 256


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
