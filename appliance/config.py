"""The appliance's settings: one TOML file (/etc/shadowrec/shadowrec.toml) plus environment overrides.

Environment variables override the file: ``SHADOWREC_<SECTION>__<KEY>``, for example
``SHADOWREC_API__PORT=8481`` or ``SHADOWREC_CAPTURE__SPAN=eth1``. Bad settings fail at start
with a message naming the field (``load`` turns pydantic's errors into one ConfigError).
"""

from __future__ import annotations

import ipaddress
import os
import socket
from contextvars import ContextVar
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

from appliance.retention.plan import Limits
from capture.errors import ConfigError
from capture.options import Options

DEFAULT_PATH = "/etc/shadowrec/shadowrec.toml"
_PATH: ContextVar = ContextVar("shadowrec_config_path", default=None)


def config_path() -> str:
    return _PATH.get() or os.environ.get("SHADOWREC_CONFIG", DEFAULT_PATH)


class RecordingSettings(BaseModel):
    """What the recorder is told: the command line's recording options and the config's [capture]
    share these (``recorder_options`` turns them into the recorder's ``Options``)."""

    out: str = Field("/var/lib/shadowrec", description="recordings, sidecars, catalog, status files")
    sip_ports: list[int] = Field([5060], min_length=1)
    sip_tls_ports: list[int] = Field(
        [5061],
        description="SIP over TLS: unreadable, but RTP to a recorder signalled there (no SIP claims it) is "
        "recorded as a call of RTP alone, marked encrypted",
    )
    rtp_timeout_s: float = Field(30.0, gt=0)
    fsync_interval_s: float = Field(5.0, ge=0)
    queue_mb: int = Field(
        64,
        ge=1,
        le=4096,
        description="writes waiting for the disk per worker (MiB); beyond "
        "it capture waits while its ring is under half full, then audio is dropped and counted",
    )
    reserve_calls: int = Field(
        1024,
        ge=0,
        le=100000,
        description="audio rings allocated at start per worker "
        "(32 KiB a call); the site's concurrent calls, so a burst costs capture no page faults",
    )
    keep_pcap: bool = Field(False, description="also keep a raw pcap of every call (always for codecs not decoded)")
    recorder_addrs: list[str] = Field(
        default_factory=list,
        description="the recorders' IPv4 addresses (the primary's VIP): RTP to them from calls up before "
        "shadowrec started is kept until their SIP shows (a re-INVITE); standing by adds the VIPs and primary",
    )
    local_format: Literal["wav", "g711"] = Field(
        "wav",
        description="wav: 16-bit PCM; g711: a G.711 call's WAV keeps the phones' µ-law or A-law bytes "
        "(WAVE_FORMAT_MULAW/ALAW: half the disk; other codecs stay PCM)",
    )
    min_free_mb: int = Field(
        64,
        ge=0,
        le=1 << 20,
        description="below this much free space (MiB) the disk counts as full: calls and their "
        "metadata are kept, their audio is a counted gap (silence) until space returns",
    )

    @field_validator("recorder_addrs")
    @classmethod
    def _addrs(cls, v: list[str]) -> list[str]:
        import ipaddress

        for a in v:
            if not isinstance(ipaddress.ip_address(a), ipaddress.IPv4Address):
                raise ValueError(f"{a}: an IPv4 address")
        return v

    @field_validator("sip_ports", "sip_tls_ports")
    @classmethod
    def _ports(cls, v: list[int]) -> list[int]:
        if any(not 0 < p < 65536 for p in v):
            raise ValueError("SIP ports must be 1-65535")
        return v


class CaptureSettings(RecordingSettings):
    span: str = Field("span0", description="SPAN (mirror) interface")
    workers: int = Field(1, ge=1, le=64)
    ring_mb: int = Field(256, ge=4, le=4096)
    queue_mb: int = Field(
        64,
        ge=4,
        le=4096,
        description="writes waiting for the disk per worker (MiB); beyond "
        "it capture waits while its ring is under half full, then audio is dropped and counted",
    )
    filter: str | None = None


def standby_addrs(sb: StandbySettings) -> tuple[str, ...]:
    """The addresses a standby's calls are recorded at: its VIPs (IPv4) and the primaries' own."""
    import ipaddress

    addrs = [a for g in sb.guards() for a in [v.split("/")[0] for v in g.vips] + ([g.primary] if g.primary else [])]
    return tuple(a for a in addrs if isinstance(ipaddress.ip_address(a), ipaddress.IPv4Address))


def recorder_options(s: RecordingSettings, **extra: Any) -> Options:
    """The one place where settings become the recorder's Options (``extra``: state_file...)."""
    return Options(
        out_dir=s.out,
        sip_ports=tuple(s.sip_ports),
        sip_tls_ports=tuple(s.sip_tls_ports),
        rtp_timeout_s=s.rtp_timeout_s,
        keep_pcap=s.keep_pcap,
        local_format=s.local_format,
        recorder_addrs=tuple(s.recorder_addrs),
        durable_s=s.fsync_interval_s,
        queue_mb=s.queue_mb,
        reserve_calls=s.reserve_calls,
        min_free_mb=s.min_free_mb,
        **extra,
    )


class PrimarySettings(BaseModel):
    """One more primary recorder the standby guards (``[[standby.primaries]]``): its own VIP, VRRP
    instance and health probe; what it does not say comes from ``[standby]``."""

    name: str = Field("", description="how the status names it (default: its address)")
    primary: str = Field(description="the primary recorder host's own address")
    vips: list[str] = Field(min_length=1)
    vrid: int = Field(ge=1, le=255)
    priority: int | None = Field(None, ge=1, le=254)
    takeover_priority: int | None = Field(None, ge=1, le=254)
    vrrp_peers: list[str] | None = None
    sip_peers: list[str] | None = None
    rtp_ports: list[int] | None = Field(None, min_length=2, max_length=2)


class StandbySettings(BaseModel):
    enabled: bool = False
    service: str = Field("eth0", description="interface on the VIP's LAN")
    vrid: int = Field(20, ge=1, le=255)
    vips: list[str] = Field(default_factory=list)
    primary: str = Field("", description="the primary recorder host's own address")
    priority: int = Field(50, ge=1, le=254)
    takeover_priority: int = Field(254, ge=1, le=254)
    advert_int_s: float = Field(1.0, gt=0, le=40.95)
    preempt: bool = True
    probe_interval_s: float = Field(0.2, gt=0)
    vrrp_peers: list[str] = Field(
        default_factory=list,
        description="addresses whose VRRP adverts are believed (on the service interface's subnet); "
        "none: the primary's own address",
    )
    sip_peers: list[str] = Field(
        default_factory=list,
        description="addresses or networks the SIP server answers (CUCM's nodes); nobody else gets an answer. "
        "None: the addresses seen on the SPAN port sending BiB INVITEs to the primary",
    )
    max_call_s: float = Field(
        4 * 3600.0, gt=0, description="a dialog answered here is cleared after this long whatever happens"
    )
    rtp_ports: list[int] = Field(
        [16384, 49150], min_length=2, max_length=2, description="first and last RTP port offered in answers"
    )
    hold_rtcp_ports: bool = Field(
        True,
        description="hold a socket on each offered RTCP port too (no ICMP to a phone's RTCP); false halves "
        "the descriptors a call takes (two, not four)",
    )
    sip_tcp_idle_s: float = Field(300.0, gt=0, description="close a SIP TCP connection idle this long")
    sip_max_connections: int = Field(256, ge=1, le=60000, description="SIP TCP connections at most")
    primaries: list[PrimarySettings] = Field(
        default_factory=list,
        description="several primary recorders guarded at once, each with its own VIP, vrid and probe, sharing one "
        "capture; none: the one that vips, vrid and primary describe",
    )
    name: str = Field("", description="how the status names the primary (default: its address)")
    fellows: list[str] = Field(
        default_factory=list,
        description="the other shadowrec appliances guarding the same primaries (an appliance pair): their VRRP "
        "adverts are believed and obeyed by priority while a primary is dead (give each a different "
        "takeover_priority: the highest answers, the others take over when it dies)",
    )

    def guards(self) -> list[StandbySettings]:
        """One settings record per primary guarded: these settings themselves, or one per
        ``primaries`` entry (what an entry leaves out taken from here)."""
        if not self.primaries:
            return [self]
        keep = ("name", "primary", "vips", "vrid", "priority", "takeover_priority", "vrrp_peers", "sip_peers",
                "rtp_ports")  # fmt: skip
        out = []
        for p in self.primaries:
            update = {k: getattr(p, k) for k in keep if getattr(p, k) is not None}
            out.append(StandbySettings.model_validate(self.model_dump() | update | {"primaries": []}))
        return out

    @model_validator(mode="after")
    def _check(self) -> StandbySettings:
        if self.primaries:
            guards = self.guards()  # each validated on its own
            vrids = [g.vrid for g in guards]
            vips = [str(ipaddress.ip_interface(v).ip) for g in guards for v in g.vips]
            if len(set(vrids)) < len(vrids) or len(set(vips)) < len(vips):
                raise ValueError("standby.primaries: each primary needs a vrid and VIPs of its own")
            return self
        for n in self.sip_peers:
            ipaddress.ip_network(n, strict=False)
        for a in [*self.vrrp_peers, *self.fellows]:
            ipaddress.ip_address(a)
        lo, hi = self.rtp_ports
        if not 1024 <= lo < hi <= 65534:
            raise ValueError("standby.rtp_ports: [first, last] within 1024-65534, first below last")
        if self.enabled:
            if not self.vips:
                raise ValueError("standby.vips: give the recorder's virtual address(es), e.g. 198.18.0.20/24")
            for v in self.vips:
                ipaddress.ip_interface(v)
            ipaddress.ip_address(self.primary or "missing")
            if self.takeover_priority <= self.priority:
                raise ValueError("standby.takeover_priority must be above standby.priority")
        return self

    def believed_peers(self) -> list[str]:
        """Whose VRRP adverts are believed: the configured peers, or the primary's own address; and
        the fellow appliances."""
        return list(dict.fromkeys((self.vrrp_peers or [self.primary]) + self.fellows))


class ApiSettings(BaseModel):
    listen: str = "127.0.0.1"
    port: int = Field(8480, ge=1, le=65535)
    token: str = Field("", description="bearer token; required when listen is not a loopback address")
    hosts: list[str] = Field(
        default_factory=list,
        description="without a token, the Host names the API answers to besides localhost and the listen "
        "address (anything else is refused: DNS rebinding)",
    )

    @model_validator(mode="after")
    def _token(self) -> ApiSettings:
        if not ipaddress.ip_address(self.listen).is_loopback and len(self.token) < 16:
            raise ValueError("api.token of 16 or more characters is required when api.listen is not loopback")
        return self


class TargetSettings(BaseModel):
    """One archive target of ``[delivery]``."""

    url: str = Field(description="file:///path, s3://bucket/prefix[?verify=readback] or sftp://user@host/path")
    policy: str = Field("", description="all or gaps; empty: gaps when standing by for a primary, else all")
    window: str = Field("", description="a daily window in local time, e.g. 22:00-06:00; empty: always")
    concurrency: int = Field(2, ge=1, le=64)
    bandwidth_mbps: float = Field(0.0, ge=0, description="at most this many megabits/s; 0: no limit")
    format: str = Field("wav", pattern="^(wav|g711|flac|opus)$", description="wav, g711, flac or opus")

    @model_validator(mode="after")
    def _check(self) -> TargetSettings:
        from appliance.delivery.targets import target_for
        from appliance.delivery.window import Window

        target_for(self.url)
        Window.parse(self.window)
        if self.policy not in ("", "all", "gaps"):
            raise ValueError("policy is all or gaps")
        return self


class DeliverySettings(BaseModel):
    targets: list[TargetSettings] = Field(default_factory=list)
    interval_s: float = Field(5.0, gt=0, description="seconds between passes over the queue")
    failing_after_s: float = Field(
        3600.0, gt=0, description="/status flags a target whose oldest undelivered failure is older than this"
    )


class RetentionSettings(BaseModel):
    max_age_days: float = Field(0.0, ge=0, description="remove calls older than this; 0: never by age")
    max_age_gap_days: float = Field(0.0, ge=0, description="for calls the primary missed; 0: 3 x max_age_days")
    max_bytes: str = Field("", description="keep the recordings under this size, e.g. 500G; empty: no limit")
    min_free: str = Field("", description="keep this much of the disk free, e.g. 20G; empty: no floor")
    interval_s: float = Field(300.0, gt=0, description="seconds between retention passes")

    @model_validator(mode="after")
    def _check(self) -> RetentionSettings:
        from appliance.retention.prune import parse_size

        for v in (self.max_bytes, self.min_free):
            if v:
                parse_size(v)
        return self

    def limits(self) -> Limits | None:
        """The retention limits, or None when nothing is configured."""
        from appliance.retention.plan import Limits
        from appliance.retention.prune import parse_size

        lim = Limits(
            max_age_days=self.max_age_days or None,
            max_age_gap_days=self.max_age_gap_days or None,
            max_bytes=parse_size(self.max_bytes) if self.max_bytes else None,
            min_free_bytes=parse_size(self.min_free) if self.min_free else None,
        )
        return lim if any(v is not None for v in vars(lim).values()) else None


class CatalogSettings(BaseModel):
    """The fleet catalog: this appliance's calls, pushed to a PostgreSQL shared by the fleet."""

    url: str | None = Field(
        None,
        description="postgresql://user:password@host:port/db; none: the local catalog alone (SQLite)",
    )
    appliance: str = Field(default_factory=socket.gethostname, description="this appliance's name in the fleet")
    api_url: str = Field("", description="where other appliances reach this one's API (to play its copies)")
    push_interval_s: float = Field(1.0, gt=0, le=3600)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        return check_catalog_url(v)


def check_catalog_url(v: str | None) -> str | None:
    """A fleet catalog URL: PostgreSQL's (``postgresql://`` or ``postgres://``), or none."""
    if v and not v.startswith(("postgresql://", "postgres://")):
        raise ValueError("the fleet catalog is a PostgreSQL URL: postgresql://user:password@host/db")
    return v or None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SHADOWREC_", env_nested_delimiter="__", extra="forbid")
    capture: CaptureSettings = CaptureSettings()
    standby: StandbySettings = StandbySettings()
    delivery: DeliverySettings = DeliverySettings()
    retention: RetentionSettings = RetentionSettings()
    api: ApiSettings = ApiSettings()
    catalog: CatalogSettings = CatalogSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = config_path()
        sources = [init_settings, env_settings]
        if os.path.exists(path):
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)


def settings_error(what: str, e: ValidationError) -> str:
    """pydantic's errors as one line naming every bad field."""
    lines = [f"{'.'.join(str(x) for x in err['loc']) or 'settings'}: {err['msg']}" for err in e.errors()]
    return f"bad {what}: " + "; ".join(lines)


def load(path: str | None = None) -> Settings:
    """Read the settings; any problem is one ConfigError naming the file and the fields."""
    if path is not None and not os.path.exists(path):
        raise ConfigError(f"config file {path} does not exist")
    token = _PATH.set(path)
    try:
        return Settings()
    except ValidationError as e:
        raise ConfigError(settings_error(f"configuration ({config_path()})", e)) from None
    except Exception as e:  # a TOML syntax error
        raise ConfigError(f"cannot read configuration {config_path()}: {e}") from None
    finally:
        _PATH.reset(token)
