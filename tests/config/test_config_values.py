"""Table tests for the value kinds: raw TOML value → typed value, or the exact problem."""

import pytest

from mailstead.config import ListenAddress, parse_listen_address
from mailstead.config._values import (
    Delimiter,
    Duration,
    Hostname,
    Int,
    Invalid,
    ListenList,
    Size,
    Str,
    format_duration,
    format_size,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.0.0.0:25", ListenAddress("0.0.0.0", 25)),
        ("127.0.0.1:10025", ListenAddress("127.0.0.1", 10025)),
        ("[::]:25", ListenAddress("::", 25)),
        ("[::1]:587", ListenAddress("::1", 587)),
        ("[2001:db8::1]:993", ListenAddress("2001:db8::1", 993)),
        ("localhost:8080", ListenAddress("localhost", 8080)),
        ("mail.example.com:65535", ListenAddress("mail.example.com", 65535)),
        ("host:1", ListenAddress("host", 1)),
        ("127.0.0.1:0", ListenAddress("127.0.0.1", 0)),
    ],
)
def test_listen_address_parses(text, expected):
    address = parse_listen_address(text)
    assert address == expected
    assert str(address) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0.0.0.0", "'0.0.0.0' is not host:port (IPv6 as [::1]:25)"),
        ("25", "'25' is not host:port (IPv6 as [::1]:25)"),
        (":25", "':25' is not host:port (IPv6 as [::1]:25)"),
        ("::1:25", "'::1:25' is not host:port (IPv6 as [::1]:25)"),
        ("[::1]", "'[::1]' is not host:port (IPv6 as [::1]:25)"),
        ("host:port", "'host:port' is not host:port (IPv6 as [::1]:25)"),
        ("host:123456", "'host:123456' is not host:port (IPv6 as [::1]:25)"),
        ("host:65536", "'host:65536': port must be 0..65535"),
        ("host:99999", "'host:99999': port must be 0..65535"),
        ("[1.2.3.4]:25", "'[1.2.3.4]:25': '1.2.3.4' is not an IPv6 address"),
        ("[::g]:25", "'[::g]:25': '::g' is not an IPv6 address"),
        ("300.1.1.1:25", "'300.1.1.1:25': '300.1.1.1' is not an IPv4 address"),
        ("bad_host:25", "'bad_host:25': 'bad_host' is not a valid host name"),
        ("-a.example:25", "'-a.example:25': '-a.example' is not a valid host name"),
        ("a b:25", "'a b:25': 'a b' is not a valid host name"),
    ],
)
def test_listen_address_rejects(text, message):
    with pytest.raises(ValueError, match=r".*") as info:
        parse_listen_address(text)
    assert str(info.value) == message


def test_listen_list_reports_every_bad_item_with_its_index():
    with pytest.raises(Invalid) as info:
        ListenList().parse(["0.0.0.0:25", "0.0.0.0", 25, "[::]:25", "0.0.0.0:25"], "listen.smtp")
    assert info.value.problems == [
        "listen.smtp[1]: '0.0.0.0' is not host:port (IPv6 as [::1]:25)",
        'listen.smtp[2]: expected a "host:port" string, got 25',
        "listen.smtp[4]: '0.0.0.0:25' is listed twice",
    ]


def test_listen_list_must_be_a_list():
    with pytest.raises(Invalid) as info:
        ListenList().parse("0.0.0.0:25", "listen.smtp")
    assert info.value.problems == [
        "listen.smtp: expected a list of \"host:port\" strings, got '0.0.0.0:25'"
    ]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (0, 0),
        (1000, 1000),
        ("1000", 1000),
        ("1K", 1024),
        ("1k", 1024),
        ("50M", 50 * 1024 * 1024),
        ("2G", 2 * 1024**3),
        (" 10 M ", 10 * 1024 * 1024),
    ],
)
def test_size_parses(raw, expected):
    assert Size().parse(raw, "k") == expected


@pytest.mark.parametrize("raw", [True, 1.5, "", "M", "1.5M", "10MB", "10T", "-1", [1]])
def test_size_rejects(raw):
    with pytest.raises(Invalid) as info:
        Size().parse(raw, "smtp.max_message_size")
    assert info.value.problems[0].startswith("smtp.max_message_size: expected a size")


def test_size_minimum():
    with pytest.raises(Invalid) as info:
        Size(minimum=1024).parse("1000", "k")
    assert info.value.problems == ["k: must be at least 1024, got 1000"]


@pytest.mark.parametrize(
    ("value", "text"),
    [(50 * 1024 * 1024, "50M"), (1024, "1K"), (1025, 1025), (0, 0), (3 * 1024**3, "3G")],
)
def test_size_formats_back(value, text):
    assert format_size(value) == text


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        (30, 30.0),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1d", 86400.0),
        ("2ms", 0.002),
        ("500ms", 0.5),
    ],
)
def test_duration_parses(raw, seconds):
    assert Duration().parse(raw, "k") == pytest.approx(seconds)


@pytest.mark.parametrize("raw", [True, 1.5, "", "5", "5 minutes", "1.5s", "-5s", "5M", [5]])
def test_duration_rejects(raw):
    with pytest.raises(Invalid) as info:
        Duration().parse(raw, "smtp.idle_timeout")
    assert info.value.problems[0].startswith("smtp.idle_timeout: expected a duration")


def test_duration_zero_only_where_allowed():
    assert Duration(positive=False).parse("0ms", "k") == 0.0
    with pytest.raises(Invalid) as info:
        Duration().parse(0, "smtp.idle_timeout")
    assert info.value.problems == ["smtp.idle_timeout: must be more than zero"]
    with pytest.raises(Invalid) as info:
        Duration(positive=False).parse(-1, "k")
    assert info.value.problems == ["k: must not be negative, got -1"]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(300.0, "5m"), (600.0, "10m"), (0.002, "2ms"), (0.0, "0ms"), (90.0, "90s"), (7200.0, "2h")],
)
def test_duration_formats_back(seconds, text):
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (True, "expected an integer, got true"),
        ("abc", "expected an integer, got 'abc'"),
        ("100", "expected an integer, got '100'"),
        (1.0, "expected an integer, got 1.0"),
        ([], "expected an integer, got a list"),
        ({}, "expected an integer, got a table"),
        (0, "must be at least 1, got 0"),
        (23, "must be at most 22, got 23"),
    ],
)
def test_int_rejects(raw, message):
    with pytest.raises(Invalid) as info:
        Int(minimum=1, maximum=22).parse(raw, "storage.compression_level")
    assert info.value.problems == [f"storage.compression_level: {message}"]


@pytest.mark.parametrize("raw", ["ESMTP\r\n250 injected", "tab\there", "nul\x00"])
def test_str_rejects_control_characters(raw):
    # A CR LF in the banner would let the configuration inject protocol lines.
    with pytest.raises(Invalid):
        Str().parse(raw, "smtp.banner")


@pytest.mark.parametrize("raw", ["+", "", "+-", "-_."])
def test_delimiter_accepts(raw):
    assert Delimiter().parse(raw, "k") == raw


@pytest.mark.parametrize("raw", ["@", "+ ", '"', "\\", "é"])
def test_delimiter_rejects(raw):
    with pytest.raises(Invalid):
        Delimiter().parse(raw, "k")


@pytest.mark.parametrize(
    "name",
    ["mail.example.com", "localhost", "MAIL.EXAMPLE.", "xn--bcher-kva.example", "bücher.example"],
)
def test_hostname_accepts(name):
    assert Hostname().parse(name, "server.hostname") == name.removesuffix(".")


@pytest.mark.parametrize(
    "name",
    ["mail example.com", "-mail.example.com", "mail..example.com", "a" * 64 + ".com", "mail_1.x"],
)
def test_hostname_rejects(name):
    with pytest.raises(Invalid) as info:
        Hostname().parse(name, "server.hostname")
    assert info.value.problems[0].startswith("server.hostname: ")
