"""``server.user`` at start-up: the configuration-aware part of the privilege drop (the
mechanics are in :mod:`mailstead.security.privileges`), called by ``MailServer.start``."""

from __future__ import annotations

import logging
import os
import tomllib

from mailstead.config import Config, ConfigError
from mailstead.config._load import config_from_dict  # the loader, from bytes already checked
from mailstead.observability.log import log_event
from mailstead.security import privileges

log = logging.getLogger("mailstead.server")


def prepare_privilege_drop(config: Config) -> privileges.Identity | None:
    """Before binding: who to switch to after binding (None: nobody), with the data directory
    already that user's. Raises PrivilegeError (the server does not start)."""
    if not config.server.user:
        if os.geteuid() == 0:
            log_event(
                log,
                "server.running_as_root",
                logging.WARNING,
                detail="set server.user: mail from the network is parsed with every privilege",
            )
        return None
    identity = privileges.resolve_user(config.server.user)
    if not privileges.must_switch(identity):
        return None
    data = privileges.read_config_file(config.path, identity)
    # The snapshot in use was read before the check: it must be what the checked file says.
    try:
        checked = config_from_dict(tomllib.loads(data.decode("utf-8")), path=config.path)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, ConfigError):
        checked = None
    if checked != config:
        raise privileges.PrivilegeError(f"{config.path} changed while the server was starting")
    for skipped in privileges.prepare_data_dir(
        config.server.data_dir, identity, config_file=config.path
    ):
        log_event(
            log, "privileges.left_alone", logging.WARNING, path=skipped.path, reason=skipped.reason
        )
    return identity


def drop_privileges(config: Config, identity: privileges.Identity) -> None:
    """After binding: become ``identity``; refuse to go on where the store could not work, warn
    about files a reload reads and the user cannot."""
    privileges.drop_privileges(identity)
    for directory in {config.server.data_dir, config.storage.path.parent}:
        if problem := privileges.inaccessible_dir(directory):
            raise privileges.PrivilegeError(problem)
    files = privileges.inaccessible([config.path, config.tls.cert_file, config.tls.key_file])
    if config.log.file is not None:
        files += privileges.inaccessible([config.log.file], os.W_OK)
    for path in files:
        log_event(
            log,
            "privileges.unreadable",
            logging.WARNING,
            path=str(path),
            user=identity.name,
            detail="a reload cannot open it again",
        )
    log_event(log, "privileges.dropped", user=identity.name, uid=identity.uid, gid=identity.gid)
