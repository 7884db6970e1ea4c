"""Outbound checks of webhook URLs and the retry schedule, without a network."""

from __future__ import annotations

import pytest

from app.domain.webhooks.delivery import backoff_seconds
from app.domain.webhooks.outbound import AllowList, check_destination
from app.lib.errors import DestinationRefused


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/",
        "https://[::ffff:127.0.0.1]/",
        "https://169.254.169.254/",
        "https://[fd00:ec2::254]/",
        "https://192.168.1.10/",
        "https://0.0.0.0/",
        "https://224.0.0.1/",
        "http://8.8.8.8/",
        "https:///nohost",
        "https://no-such-host.invalid/",
    ],
)
async def test_non_public_or_plain_destinations_are_refused(url: str) -> None:
    with pytest.raises(DestinationRefused):
        await check_destination(url, AllowList.parse(""))


async def test_a_public_address_over_https_is_accepted_and_pinned() -> None:
    destination = await check_destination("https://8.8.8.8:8443/hooks", AllowList.parse(""))
    assert (destination.host, str(destination.address)) == ("8.8.8.8", "8.8.8.8")


async def test_the_allow_list_admits_listed_networks_and_hosts_only() -> None:
    allowed = AllowList.parse("10.0.0.0/8, 127.0.0.1 ::1")
    assert (await check_destination("http://10.2.3.4/x", allowed)).host == "10.2.3.4"
    assert str((await check_destination("http://localhost:9/x", allowed)).address) in ("127.0.0.1", "::1")
    with pytest.raises(DestinationRefused):
        await check_destination("https://192.168.0.1/x", allowed)


def test_backoff_doubles_with_jitter_up_to_the_ceiling() -> None:
    waits = [backoff_seconds(n, 10.0, 60.0) for n in range(1, 8)]
    assert 5.0 <= waits[0] <= 10.0
    assert 10.0 <= waits[1] <= 20.0
    assert all(30.0 <= w <= 60.0 for w in waits[3:])
