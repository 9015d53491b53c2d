"""The edge's per-key ceiling (deploy/nginx.conf) follows the tier table."""

from __future__ import annotations

import re
from pathlib import Path

from coordinator.tiers import TIERS

NGINX_CONF = Path(__file__).resolve().parents[3] / "deploy" / "nginx.conf"


def test_the_per_key_ceiling_is_the_most_generous_tier() -> None:
    conf = NGINX_CONF.read_text()
    rate = re.search(r"limit_req_zone \$vp_key_id zone=vp_per_key:\S+ rate=(\d+)r/s;", conf)
    burst = re.search(r"limit_req zone=vp_per_key burst=(\d+) nodelay;", conf)
    assert rate and burst, "deploy/nginx.conf lost its per-key limit"
    assert int(rate.group(1)) == max(t.requests_per_second for t in TIERS.values())
    assert int(burst.group(1)) == max(t.burst for t in TIERS.values())
