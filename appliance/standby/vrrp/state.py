"""The VRRPv3 state machine (RFC 5798 §6.4), pure: no I/O, time passed in (nanoseconds).

``VrrpInstance.handle(event, now)`` is the one transition function; it returns the actions
for the scheduler to carry out (send an advertisement, claim or release the virtual IP).
Handlers are named state_event, as in keepalived. The instance has one deadline, set only
in ``_arm``: the Adver_Timer in Master, the Master_Down_Timer in Backup.

shadowrec extends the RFC in one place, for a recorder service that died on a live host:
``Event.PRIMARY_DEAD`` (from the health policy) is treated as a Master_Down event, so
shadowrec takes over at once with the priority it advertises while the primary is dead
(``takeover_priority``, above the primary's), which makes the primary's keepalived step
down. ``Event.PRIMARY_ALIVE`` drops back to the configured priority and, in Master, hands
the VIP back with a priority-0 advertisement (RFC 5798 §6.4.3 shutdown), so the primary
takes over after its Skew_Time.

While the probes judge the primary dead they are the authority, whatever an advertisement says
(VRRPv3 has no authentication; ``check.py`` filters what reaches here, but a replayed or spoofed
advert from the primary's own address passes it): in Master a higher priority is not obeyed (it is
counted as a ``conflict``: the primary's keepalived would have to be the address owner, priority
255, which this design does not support), and in Backup no advert postpones the down timer armed
on entering Backup, so the takeover comes no later than the local Master_Down_Interval. The
interval an advert announces is bounded (``bounded_interval``): a forged 40.95 s cannot stretch
the down timer to two minutes.

An appliance pair (``fellows``: other shadowrec appliances guarding the same primary) is plain
VRRP among the standbys: their adverts are obeyed by priority even while the primary is dead. A
standby that judges the primary dead waits ``fellow_wait`` (a quarter advert interval for each
step its takeover priority lies below 255) before it claims, so the fellow with the highest
takeover priority answers, the others stay Backup on its adverts, and when it dies their down
timers take over; a Master that hears a fellow of higher priority steps down.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

NS = 1_000_000_000


class VrrpState(Enum):
    INITIALIZE = "Initialize"
    BACKUP = "Backup"
    MASTER = "Master"


class Event(Enum):
    STARTUP = "Startup"
    SHUTDOWN = "Shutdown"
    ADVERT = "Advertisement"
    TIMER = "Timer"
    PRIMARY_DEAD = "PrimaryDead"
    PRIMARY_ALIVE = "PrimaryAlive"


@dataclass(frozen=True)
class SendAdvert:
    priority: int


@dataclass(frozen=True)
class ClaimVip:  # add the addresses, then gratuitous ARP / unsolicited NA
    pass


@dataclass(frozen=True)
class ReleaseVip:
    pass


@dataclass(frozen=True)
class Received:
    src: str
    priority: int
    max_adver_int_cs: int


@dataclass
class VrrpConfig:
    vrid: int
    priority: int = 50  # below the primary's keepalived (usually 100)
    takeover_priority: int = 254  # advertised while the health policy says the primary is dead
    advert_int_cs: int = 100  # centiseconds
    preempt: bool = True
    local_ip: str = "0.0.0.0"
    fellows: frozenset = frozenset()  # the other standbys' addresses (an appliance pair): obeyed by priority


@dataclass
class VrrpInstance:
    cfg: VrrpConfig
    state: VrrpState = VrrpState.INITIALIZE
    priority: int = 0
    master_adver_int_cs: int = 0
    deadline: int | None = None
    master_ip: str | None = None
    primary_dead: bool = False
    conflicts: int = 0  # higher-priority adverts not obeyed because the primary is judged dead
    last_conflict: str = ""
    transitions: list = field(default_factory=list)  # (now, from, to, why)

    def __post_init__(self):
        self.priority = self.cfg.priority
        self.master_adver_int_cs = self.cfg.advert_int_cs

    def bounded_interval(self, advertised_cs: int) -> int:
        """The Master_Adver_Interval learnt from an advert, held within half to twice our own."""
        own = self.cfg.advert_int_cs
        return min(max(advertised_cs, max(1, own // 2)), 2 * own)

    # RFC 5798 §6.1 timers, in ns
    def skew_time(self) -> int:
        return ((256 - self.priority) * self.master_adver_int_cs * NS // 100) // 256

    def master_down_interval(self) -> int:
        return 3 * self.master_adver_int_cs * NS // 100 + self.skew_time()

    def fellow_wait(self) -> int:
        """How long a standby with fellows waits, the primary dead, before it claims: the highest
        takeover priority claims first, and its advert reaches the others before they would."""
        return (255 - self.cfg.takeover_priority) * self.cfg.advert_int_cs * NS // 400

    def _arm(self, now: int, how: str) -> None:
        """The one place the deadline is computed."""
        if how == "advert":
            self.deadline = now + self.cfg.advert_int_cs * NS // 100
        elif how == "down":
            self.deadline = now + self.master_down_interval()
        elif how == "skew":
            self.deadline = now + self.skew_time()
        elif how == "fellows":
            self.deadline = now + self.fellow_wait()
        else:
            self.deadline = None

    def _go(self, now: int, to: VrrpState, why: str) -> None:
        self.transitions.append((now, self.state, to, why))
        self.state = to

    # the one transition function --------------------------------------------------------
    def handle(self, event: Event, now: int, rx: Received | None = None) -> list:
        handler = getattr(self, f"{self.state.name.lower()}_{event.name.lower()}", None)
        if handler is None:
            return []
        return handler(now, rx)

    # Initialize
    def initialize_startup(self, now, _rx):
        if self.priority == 255:
            return self._become_master(now, "owner")
        self.master_adver_int_cs = self.cfg.advert_int_cs
        self._arm(now, "down")
        self._go(now, VrrpState.BACKUP, "startup")
        return []

    def initialize_primary_dead(self, now, _rx):
        self.primary_dead = True
        self.priority = self.cfg.takeover_priority
        return []

    def initialize_primary_alive(self, now, _rx):
        self.primary_dead = False
        self.priority = self.cfg.priority
        return []

    # Backup
    def backup_timer(self, now, _rx):
        if self.deadline is not None and now >= self.deadline:
            return self._become_master(now, "master down timer")
        return []

    def backup_primary_dead(self, now, _rx):
        self.primary_dead = True
        self.priority = self.cfg.takeover_priority
        if not self.cfg.fellows:
            return self._become_master(now, "primary dead (health probes)")
        if self.master_ip in self.cfg.fellows and self.deadline is not None and now < self.deadline:
            return []  # a fellow answers already: its adverts hold this one Backup, its silence ends it
        self._arm(now, "fellows")  # the backup_timer claims then, unless a fellow's advert came first
        return []

    def backup_primary_alive(self, now, _rx):
        self.primary_dead = False
        self.priority = self.cfg.priority
        return []

    def backup_advert(self, now, rx: Received):
        if self.primary_dead and rx.src not in self.cfg.fellows:  # the probes decide: no advert postpones it
            return []
        if rx.priority == 0:
            self._arm(now, "skew")
            return []
        if not self.cfg.preempt or rx.priority >= self.priority:
            self.master_ip = rx.src
            self.master_adver_int_cs = self.bounded_interval(rx.max_adver_int_cs)
            self._arm(now, "down")
        return []  # preempt and a lower priority: discard; the down timer will fire

    def backup_shutdown(self, now, _rx):
        self._arm(now, None)
        self._go(now, VrrpState.INITIALIZE, "shutdown")
        return []

    # Master
    def master_timer(self, now, _rx):
        if self.deadline is not None and now >= self.deadline:
            self._arm(now, "advert")
            return [SendAdvert(self.priority)]
        return []

    def master_advert(self, now, rx: Received):
        if rx.priority == 0:
            self._arm(now, "advert")
            return [SendAdvert(self.priority)]
        if rx.priority > self.priority or (rx.priority == self.priority and _ip_gt(rx.src, self.cfg.local_ip)):
            if self.primary_dead and rx.src not in self.cfg.fellows:
                self.conflicts += 1
                self.last_conflict = f"priority {rx.priority} from {rx.src} while the primary is dead: VIP kept"
                return []
            self.master_ip = rx.src
            self.master_adver_int_cs = self.bounded_interval(rx.max_adver_int_cs)
            self._arm(now, "down")
            self._go(now, VrrpState.BACKUP, f"higher priority {rx.priority} from {rx.src}")
            return [ReleaseVip()]
        return []

    def master_primary_dead(self, now, _rx):
        self.primary_dead = True
        if self.priority != self.cfg.takeover_priority:
            self.priority = self.cfg.takeover_priority
            self._arm(now, "advert")
            return [SendAdvert(self.priority)]
        return []

    def master_primary_alive(self, now, _rx):
        """Hand back: priority 0 now, so the primary takes over after its Skew_Time."""
        self.primary_dead = False
        self.priority = self.cfg.priority
        self.master_adver_int_cs = self.cfg.advert_int_cs
        self._arm(now, "down")
        self._go(now, VrrpState.BACKUP, "primary alive again")
        return [SendAdvert(0), ReleaseVip()]

    def master_shutdown(self, now, _rx):
        self._arm(now, None)
        self._go(now, VrrpState.INITIALIZE, "shutdown")
        return [SendAdvert(0), ReleaseVip()]

    def _become_master(self, now, why):
        self._arm(now, "advert")
        self.master_ip = self.cfg.local_ip
        self._go(now, VrrpState.MASTER, why)
        return [SendAdvert(self.priority), ClaimVip()]


def _ip_gt(a: str, b: str) -> bool:
    import ipaddress

    x, y = ipaddress.ip_address(a), ipaddress.ip_address(b)
    return (x.version, int(x)) > (y.version, int(y))
