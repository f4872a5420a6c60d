"""Rate limits as a client meets them: 429, a message that says what happened, and Retry-After.

Each test runs the real app with small thresholds; the client's address comes from httpx's
ASGITransport (`client=(host, port)`), and `X-Forwarded-For` counts only from a trusted proxy.
"""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from httpx import ASGITransport, AsyncClient, Response
from starlette.applications import Starlette

from forum.app import create_app
from forum.config import RateLimits, Settings
from tests.conftest import BASE_URL, csrf_from, register, submit
from tests.factories import make_category, make_member

PASSWORD = "correct horse battery"
LOGIN_MESSAGE = "Too many login attempts"
ClientFactory = Callable[..., AbstractAsyncContextManager[AsyncClient]]


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Starlette]:
    application = create_app(settings, run_worker=False)
    async with application.router.lifespan_context(application):
        yield application


def clients_of(application: Starlette) -> ClientFactory:
    """Browsers on one app, each from the address it is given."""

    @asynccontextmanager
    async def browser(host: str = "127.0.0.1") -> AsyncIterator[AsyncClient]:
        transport = ASGITransport(app=application, client=(host, 123))
        async with AsyncClient(transport=transport, base_url=BASE_URL) as http:
            yield http

    return browser


def limited(settings: Settings, **limits: float) -> Settings:
    return settings.with_changes(rate_limits=RateLimits(**limits))  # type: ignore[arg-type]


def assert_limited(response: Response, message: str) -> None:
    assert response.status_code == 429, response.text
    assert message in response.text
    retry_after = response.headers.get("retry-after", "")
    assert retry_after.isdigit() and int(retry_after) >= 1, response.headers


async def try_login(browser: AsyncClient, name: str, password: str = "wrong password", **headers: str) -> Response:
    page = await browser.get("/login")
    return await browser.post(
        "/login", data={"username": name, "password": password, "csrf_token": csrf_from(page)},
        headers={"Origin": BASE_URL, **headers},
    )  # fmt: skip


async def test_login_per_account(settings: Settings) -> None:
    await make_member(settings, "alice")
    async with running(limited(settings, login_per_account=3, login_per_address=100)) as application:
        browser = clients_of(application)
        for number in range(3):  # from three addresses, so only the account's counter fills
            async with browser(f"192.0.2.{number + 1}") as http:
                assert (await try_login(http, "alice")).status_code == 422
        async with browser("198.51.100.7") as http:
            assert_limited(await try_login(http, "alice", PASSWORD), LOGIN_MESSAGE)
            assert_limited(await try_login(http, "ALICE ", PASSWORD), LOGIN_MESSAGE)
            assert (await try_login(http, "bob")).status_code == 422  # other accounts are untouched


async def test_login_per_address(settings: Settings) -> None:
    await make_member(settings, "alice")
    async with running(limited(settings, login_per_account=100, login_per_address=3)) as application:
        browser = clients_of(application)
        async with browser("192.0.2.1") as http:
            for name in ("ann", "ben", "cid"):
                assert (await try_login(http, name)).status_code == 422
            assert_limited(await try_login(http, "alice", PASSWORD), LOGIN_MESSAGE)
        async with browser("192.0.2.2") as http:
            assert (await try_login(http, "alice", PASSWORD)).status_code == 303


async def test_registration_per_address(settings: Settings) -> None:
    async with running(limited(settings, register_per_address=2)) as application:
        browser = clients_of(application)
        async with browser("192.0.2.1") as http:
            await register(http, "ann")
            http.cookies.clear()
            await register(http, "ben")
            http.cookies.clear()
            refused = await submit(
                http, "/register", {"username": "cid", "email": "c@example.org", "password": PASSWORD}
            )
            assert_limited(refused, "Too many accounts")
            assert 'value="cid"' in refused.text  # the form comes back with what was typed
        async with browser("192.0.2.2") as http:
            await register(http, "cid")


async def test_posting_per_account(settings: Settings) -> None:
    await make_category(settings, "general", "General")
    async with running(limited(settings, post_per_account=2)) as application:
        browser = clients_of(application)
        async with browser() as http:
            await register(http, "alice")
            created = await submit(http, "/c/general/new", {"title": "One", "body": "first"})
            assert created.status_code == 303
            thread_url = created.headers["location"]
            assert (await submit(http, thread_url, {"body": "second"}, action=f"{thread_url}/reply")).status_code == 303
            refused_reply = await submit(
                http, thread_url, {"body": "third, typed with care"}, action=f"{thread_url}/reply"
            )
            assert_limited(refused_reply, "posting too fast")
            assert "third, typed with care" in refused_reply.text
            refused_thread = await submit(http, "/c/general/new", {"title": "Two", "body": "my careful text"})
            assert_limited(refused_thread, "posting too fast")
            assert "my careful text" in refused_thread.text
        async with browser("192.0.2.9") as http:  # another member posts freely
            await register(http, "bob")
            assert (await submit(http, "/c/general/new", {"title": "Bob's", "body": "x"})).status_code == 303


async def test_voting_per_account(settings: Settings) -> None:
    await make_category(settings, "general", "General")
    async with running(limited(settings, vote_per_account=2)) as application:
        browser = clients_of(application)
        async with browser() as http:
            await register(http, "alice")
            created = await submit(http, "/c/general/new", {"title": "One", "body": "first"})
            thread_url = created.headers["location"]
        async with browser("192.0.2.7") as http:
            await register(http, "bob")
            page = await http.get(thread_url)
            post_id = page.text.split('action="/p/', 1)[1].split("/vote", 1)[0]
            for value in ("1", "-1"):
                assert (
                    await submit(http, thread_url, {"value": value}, action=f"/p/{post_id}/vote")
                ).status_code == 303
            assert_limited(
                await submit(http, thread_url, {"value": "0"}, action=f"/p/{post_id}/vote"), "voting too fast"
            )
            # The refused vote changed nothing: bob's down vote stands.
            assert '<span class="score" title="0 up, 1 down">-1</span>' in (await http.get(thread_url)).text


# --- Which address counts ------------------------------------------------------------------------


async def test_asgi_transport_address_is_loopback(settings: Settings) -> None:
    """The trusted-proxy tests below rely on it."""
    async with running(settings) as application:
        seen: list[str] = []

        async def probe(scope: object, receive: object, send: object) -> None:
            seen.append(scope["client"][0])  # type: ignore[index]
            await application(scope, receive, send)  # type: ignore[arg-type]

        async with AsyncClient(transport=ASGITransport(app=probe), base_url=BASE_URL) as http:
            await http.get("/healthz")
    assert seen == ["127.0.0.1"]


async def test_forwarded_for_is_ignored_without_trusted_proxies(settings: Settings) -> None:
    assert settings.trusted_proxies == ()
    limits = limited(settings, login_per_address=2, login_per_account=100)
    async with running(limits) as application, clients_of(application)("192.0.2.1") as http:
        for number, name in enumerate(["ann", "ben", "cid", "dan"]):
            response = await try_login(http, name, **{"X-Forwarded-For": f"203.0.113.{number}"})
            if number < 2:
                assert response.status_code == 422
            else:
                assert_limited(response, LOGIN_MESSAGE)


async def test_forwarded_for_counts_behind_a_trusted_proxy(settings: Settings) -> None:
    proxies = (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("10.0.0.0/8"))
    trusted = limited(settings, login_per_address=2, login_per_account=100).with_changes(trusted_proxies=proxies)
    async with running(trusted) as application, clients_of(application)("127.0.0.1") as proxy:
        for name in ("ann", "ben"):
            assert (await try_login(proxy, name, **{"X-Forwarded-For": "203.0.113.1"})).status_code == 422
        assert_limited(await try_login(proxy, "cid", **{"X-Forwarded-For": "203.0.113.1"}), LOGIN_MESSAGE)
        # A client cannot pick its address by sending its own header: the proxy appends the real one.
        spoofed = await try_login(proxy, "dan", **{"X-Forwarded-For": "198.51.100.5, 203.0.113.1"})
        assert_limited(spoofed, LOGIN_MESSAGE)
        # Trusted hops on the right are skipped: the rightmost untrusted address is the client.
        chained = await try_login(proxy, "eve", **{"X-Forwarded-For": "203.0.113.1, 10.1.2.3"})
        assert_limited(chained, LOGIN_MESSAGE)
        # Every other forwarded client has its own counter.
        assert (await try_login(proxy, "fay", **{"X-Forwarded-For": "203.0.113.2"})).status_code == 422
        assert (await try_login(proxy, "gus", **{"X-Forwarded-For": "198.51.100.5, 203.0.113.3"})).status_code == 422


async def test_untrusted_peer_cannot_forward(settings: Settings) -> None:
    trusted = limited(settings, login_per_address=1, login_per_account=100).with_changes(
        trusted_proxies=(ipaddress.ip_network("10.0.0.0/8"),)
    )
    async with running(trusted) as application, clients_of(application)("192.0.2.1") as http:
        assert (await try_login(http, "ann", **{"X-Forwarded-For": "203.0.113.1"})).status_code == 422
        assert_limited(await try_login(http, "ben", **{"X-Forwarded-For": "203.0.113.2"}), LOGIN_MESSAGE)


async def test_ipv6_clients_count_per_64(settings: Settings) -> None:
    async with running(limited(settings, login_per_address=2, login_per_account=100)) as application:
        browser = clients_of(application)
        async with browser("2001:db8::1") as first, browser("2001:db8::2") as neighbour:
            assert (await try_login(first, "ann")).status_code == 422
            assert (await try_login(neighbour, "ben")).status_code == 422
            assert_limited(await try_login(first, "cid"), LOGIN_MESSAGE)
            assert_limited(await try_login(neighbour, "dan"), LOGIN_MESSAGE)
        async with browser("2001:db8:0:1::1") as other_network:
            assert (await try_login(other_network, "eve")).status_code == 422
        async with browser("::ffff:192.0.2.1") as mapped, browser("192.0.2.1") as plain:
            assert (await try_login(mapped, "fay")).status_code == 422
            assert (await try_login(plain, "gus")).status_code == 422
            assert_limited(await try_login(plain, "hal"), LOGIN_MESSAGE)


async def test_login_limit_counts_one_account_by_name_and_by_email(settings: Settings) -> None:
    limited = settings.with_changes(rate_limits=RateLimits(login_per_account=3, login_per_address=100))
    await make_member(limited, "gwen")
    app = create_app(limited, run_worker=False)
    async with app.router.lifespan_context(app), AsyncClient(transport=ASGITransport(app=app), base_url=BASE_URL) as c:
        statuses = []
        for name in ("gwen", "gwen@example.org", "GWEN", "gwen@example.org"):
            response = await submit(c, "/login", {"username": name, "password": "wrong password"})
            statuses.append(response.status_code)
        assert statuses == [422, 422, 422, 429]
