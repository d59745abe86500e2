from appliance.standby.probe import HealthPolicy, Verdict


def test_alive_dead_by_misses_and_back_with_hysteresis():
    p = HealthPolicy(misses=3, answers=5)
    assert p.sent(0.0, "a") is None and p.answer(0.01, "a") is Verdict.ALIVE
    t = 0.2
    changes = []
    for i in range(4):  # the host goes quiet
        changes.append(p.sent(t, f"m{i}"))
        t += 0.2
    assert changes == [None, None, None, Verdict.DEAD]  # the third probe judged unanswered: 0.6-0.8 s
    for i in range(5):
        p.sent(t, f"b{i}")
        r = p.answer(t + 0.01, f"b{i}")
        t += 0.2
    assert r is Verdict.ALIVE and [v for _, v, _ in p.history] == [Verdict.ALIVE, Verdict.DEAD, Verdict.ALIVE]


def test_refused_is_dead_at_once_and_late_answers_do_not_count():
    p = HealthPolicy()
    p.sent(0.0, "a")
    p.answer(0.01, "a")
    assert p.refused(0.3) is Verdict.DEAD
    assert p.answer(0.31, "zzz") is None and p.verdict is Verdict.DEAD
