"""Configuration: one typed TOML schema (``mailstead.toml``), its loader and its generated
documentation.

``load_config(path)`` returns an immutable ``Config`` snapshot or raises ``ConfigError`` listing
every problem, each naming its dotted key. Loading has no side effects, so a reload is another
``load_config`` call; keep the running snapshot when it raises. ``render_docs()`` writes
``docs/configuration.md``; ``render_config_file()`` the commented file ``mailstead init`` creates.
"""

from mailstead.config._load import ConfigError, load_config
from mailstead.config._render import render_config_file, render_docs, render_effective
from mailstead.config._schema import (
    AuthConfig,
    Config,
    DeliveryConfig,
    IMAPConfig,
    ListenConfig,
    LogConfig,
    ServerConfig,
    SMTPConfig,
    StorageConfig,
    TLSConfig,
)
from mailstead.config._values import ListenAddress, hostname_problem, parse_listen_address

__all__ = [
    "AuthConfig",
    "Config",
    "ConfigError",
    "DeliveryConfig",
    "IMAPConfig",
    "ListenAddress",
    "ListenConfig",
    "LogConfig",
    "SMTPConfig",
    "ServerConfig",
    "StorageConfig",
    "TLSConfig",
    "hostname_problem",
    "load_config",
    "parse_listen_address",
    "render_config_file",
    "render_docs",
    "render_effective",
]
