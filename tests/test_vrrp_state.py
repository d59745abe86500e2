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


def pair_member(ip, takeover, fellow):
    v = VrrpInstance(
        VrrpConfig(vrid=20, priority=50, takeover_priority=takeover, local_ip=ip, fellows=frozenset({fellow}))
    )
    v.handle(Event.STARTUP, 0)
    return v


def test_an_appliance_pair_the_highest_takeover_priority_answers_and_the_other_takes_over_when_it_dies():
    a = pair_member("198.18.0.3", 254, "198.18.0.5")
    b = pair_member("198.18.0.5", 253, "198.18.0.3")
    t = 5 * NS
    assert a.handle(Event.PRIMARY_DEAD, t) == [] and b.handle(Event.PRIMARY_DEAD, t) == []  # each waits
    assert a.deadline == t + NS // 4 and b.deadline == t + NS // 2
    t += NS // 4
    assert a.handle(Event.TIMER, t) == [SendAdvert(254), ClaimVip()] and a.state is VrrpState.MASTER
    assert b.handle(Event.ADVERT, t + MS, Received("198.18.0.3", 254, 100)) == []  # the fellow answers
    for k in range(1, 20):  # its adverts hold b Backup, however long the outage
        t = 5 * NS + NS // 4 + k * NS
        assert a.handle(Event.TIMER, t) == [SendAdvert(254)]
        assert b.handle(Event.ADVERT, t, Received("198.18.0.3", 254, 100)) == []
        assert b.handle(Event.TIMER, t + 1) == [] and b.state is VrrpState.BACKUP
    # a dies mid-outage: b's down timer (3 intervals and its skew) takes the VIP
    assert b.handle(Event.TIMER, t + b.master_down_interval() - 1) == []
    assert b.handle(Event.TIMER, t + b.master_down_interval()) == [SendAdvert(253), ClaimVip()]
    assert b.state is VrrpState.MASTER


def test_a_master_steps_down_for_a_fellow_of_higher_priority_but_not_for_the_primarys_advert():
    b = pair_member("198.18.0.5", 253, "198.18.0.3")
    b.handle(Event.PRIMARY_DEAD, 0)
    assert b.handle(Event.TIMER, NS // 2)[1] == ClaimVip()
    assert b.handle(Event.ADVERT, NS, Received("198.18.0.2", 254, 100)) == [] and b.conflicts == 1  # the primary's
    assert b.handle(Event.ADVERT, NS, Received("198.18.0.3", 254, 100)) == [ReleaseVip()]  # its fellow's
    assert b.state is VrrpState.BACKUP and b.master_ip == "198.18.0.3"


def test_a_standby_learning_the_primary_is_dead_while_a_fellow_answers_stays_backup():
    b = pair_member("198.18.0.5", 253, "198.18.0.3")
    b.handle(Event.ADVERT, NS, Received("198.18.0.3", 254, 100))  # the fellow already master
    down = b.deadline
    assert b.handle(Event.PRIMARY_DEAD, NS + 1) == [] and b.deadline == down  # its down timer, not a claim
    assert b.state is VrrpState.BACKUP
