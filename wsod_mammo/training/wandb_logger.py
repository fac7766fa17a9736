"""Lightning's W&B logger with this project's defaults: offline unless the user opts in."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, cast

from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only

#: The W&B project a run is logged under where the config names none: runs are written to
#: ``<save_dir>/<project>/<run id>`` (``cli_checkpoints.writes_into`` finds a run's folder by it).
DEFAULT_PROJECT = "wsod-mammo"

log = logging.getLogger(__name__)


class WandbStartError(RuntimeError):
    """W&B could not start the run (online without an API key, or without a reachable server): the reason in one
    line, not wandb's traceback."""


def _settings_files_mode() -> str:
    """The ``mode`` W&B's settings files hold (the working directory's ``wandb/settings``, else the global one in
    ``WANDB_CONFIG_DIR`` or ``~/.config/wandb``), where ``wandb disabled`` and ``wandb offline`` write it; "" where
    none. The mode this logger passes to ``wandb.init`` outranks those files, so ``wandb disabled`` went unheeded:
    every command still wrote an offline run. Read as W&B's setup reads them, without starting its process-wide
    setup here: Lightning sets ``WANDB_MODE`` after this, and W&B warned that the change would be ignored."""
    from wandb.sdk.wandb_settings import Settings

    try:
        settings = Settings()  # root_dir: the working directory, as W&B's setup takes it for these files
        settings.settings_system = str(Path(os.environ.get("WANDB_CONFIG_DIR") or "~/.config/wandb").expanduser()
                                       / "settings")  # fmt: skip
        files = settings.read_system_settings()
    except Exception:  # an unreadable settings file: W&B itself prints the problem and goes on without it
        return ""
    return str(files.all().get("mode", "")).strip().lower()


def _writable(folder: Path) -> bool:
    """Whether ``folder`` can be made and a file written in it (a read-only folder that exists passes ``mkdir``)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def _home_folder(find: Callable[[], str | Path]) -> Path | None:
    """W&B's default folder (``find``: ``wandb.env.get_data_dir``, ``get_cache_dir``, the settings' folder), or None
    where there is no home to put it in: HOME unset or relative (``HOME=``) for a uid without a passwd entry
    (``docker run -u 12345``, OpenShift, ``env -i``), where platformdirs and pathlib raise, and `wsod fit` / `test`
    failed with their traceback before the first batch."""
    try:
        return Path(find()).expanduser()
    except RuntimeError:  # platformdirs' "could not determine the home directory", pathlib's "Could not determine"
        return None


def use_writable_wandb_folders(save_dir: str | Path) -> None:
    """Point W&B's data and cache folders into ``<save_dir>/wandb/`` where their defaults (under the home folder,
    XDG's) cannot be written and no ``WANDB_DATA_DIR`` / ``WANDB_CACHE_DIR`` says where: with a read-only home (a
    container run as another user, HOME=/; a cluster's compute node) `wsod test` wrote its report, then failed
    with wandb's traceback at its first W&B table (staged in the data folder), and W&B's service printed its whole
    debug log to the terminal (its log folder is in the cache folder). Without a home folder at all, its settings'
    folder too (``WANDB_CONFIG_DIR``; only read, so a read-only one stays), and XDG's data and cache homes, which W&B
    asks platformdirs for even where its own variables are set. Set before W&B starts its service."""
    from wandb import env

    for variable, find_default, name, xdg in (
        (env.DATA_DIR, lambda: env.get_data_dir(), "data", "XDG_DATA_HOME"),
        (env.CACHE_DIR, lambda: env.get_cache_dir(), "cache", "XDG_CACHE_HOME"),
        (env.CONFIG_DIR, lambda: "~/.config/wandb", "config", None),
    ):
        default = _home_folder(find_default)
        moved = Path(os.environ.get(variable) or Path(save_dir).resolve() / "wandb" / name)
        if default is None and xdg:  # W&B asks platformdirs for its default even where its own variable is set
            os.environ[xdg] = str(moved)
        if os.environ.get(variable) or (default is not None and (name == "config" or _writable(default))):
            continue
        os.environ[variable] = str(moved)
        why = f"{default} cannot be written" if default else "has no home folder to be in (HOME unset or relative)"
        log.info("W&B's %s folder %s: it is %s instead (%s sets another)", name, why, moved, variable)


def wandb_folder(init_args: Any) -> str:
    """The folder W&B's ``wandb/`` goes into for a logger's ``init_args``: its ``dir``, else ``WANDB_DIR`` (W&B's
    own variable for it, which Lightning's ``save_dir`` silently outranked), else its ``save_dir``."""
    return str(init_args.get("dir") or os.environ.get("WANDB_DIR") or init_args.get("save_dir") or ".")


class OfflineWandbLogger(WandbLogger):
    """``WandbLogger`` that runs offline by default and honours ``WANDB_MODE`` (``disabled``, ``online``) and the
    ``disabled`` that ``wandb disabled`` writes into W&B's settings files.

    Lightning's logger sets ``WANDB_MODE=dryrun`` whenever ``offline=True``, which would override a user's
    ``WANDB_MODE=disabled``; here the environment wins: ``disabled`` turns W&B off, ``online`` syncs live (what
    W&B's offline banner tells users to set, which used to change nothing). Checkpoints are never uploaded offline
    (``log_model`` must stay false there). Set ``offline: false`` in YAML to sync runs live. The run is finished
    when the Trainer finalizes the logger, so the next command in the same process (a notebook, the tests) gets
    a run and a directory of its own instead of silently appending to this one (W&B's service process writes an
    offline run's ``run-*.wandb`` file just after ``finish`` returns, and at the latest when the process exits:
    read in the same process, wait for its ``exit`` record). ``group`` defaults to the name of ``save_dir``, so a
    fit and the tests of its checkpoints share a W&B group. W&B's own terminal output is ``quiet`` unless
    ``settings`` says otherwise. The W&B run's ``wandb/`` folder goes into ``dir`` if given, else ``WANDB_DIR``,
    else ``save_dir`` (:func:`wandb_folder`); the run folders (config, checkpoints, reports) stay in ``save_dir``.
    ``wsod`` passes ``save_dir`` as ``dir`` where the command line gives it: that option wins over ``WANDB_DIR``.
    """

    def __init__(
        self,
        project: str = DEFAULT_PROJECT,
        save_dir: str = "runs",
        name: str | None = None,
        offline: bool = True,
        log_model: bool | str = False,
        **kwargs: Any,
    ) -> None:
        environment = os.environ.get("WANDB_MODE", "").lower()
        # The files' disabled only: their online (`wandb enabled`) is no opt-in to uploading, which needs a login
        if environment == "disabled" or (not environment and _settings_files_mode() == "disabled"):
            offline = False
            kwargs["mode"] = "disabled"
        elif environment in ("online", "run"):  # an explicit opt-in, the one W&B's own offline banner suggests
            offline = False
        elif offline:
            # Explicit (LightningCLI passes mode: null): wandb's process-wide settings may hold an older mode.
            kwargs["mode"] = kwargs.get("mode") or "offline"
        if offline and log_model:
            raise ValueError("trainer.logger: log_model uploads checkpoints and needs offline: false")
        # The package's own log says where the run went; W&B's end-of-run dump of ~80 history and summary rows
        # after every command is noise there (quiet keeps the offline header with the run's folder).
        # A user's settings (an init_timeout, say) add to that rather than bring the dump back.
        settings = kwargs.get("settings")
        kwargs["settings"] = {"quiet": True} | settings if isinstance(settings, dict) else settings or {"quiet": True}
        # One group per config: fit and its tests (same save_dir) land together; `wsod study` names its own.
        kwargs["group"] = kwargs.get("group") or Path(save_dir).name or None
        # Lightning types log_model as Literal["all"] | bool; it passes a string through as it is.
        model = cast('Literal["all"] | bool', log_model)
        folder = wandb_folder({"dir": kwargs.get("dir"), "save_dir": save_dir})
        super().__init__(project=project, save_dir=save_dir, name=name, offline=offline, log_model=model, **kwargs)
        self._wandb_init["dir"] = folder  # Lightning's passes save_dir, which outranked WANDB_DIR
        # Lightning always passes anonymous (None when unset), and wandb warns that the setting is deprecated.
        self._wandb_init.pop("anonymous", None)

    @property
    def experiment(self) -> Any:
        """The W&B run, started on first use. Its folder is made first, not when the logger is built (a command
        refused for a bad option writes nothing): W&B looks for a git root there at init and warned "git root ...
        does not exist" for a new save_dir."""
        if self._experiment is None and self.save_dir:
            Path(self.save_dir).mkdir(parents=True, exist_ok=True)
            Path(self._wandb_init["dir"]).expanduser().mkdir(parents=True, exist_ok=True)
            if self._wandb_init.get("mode") != "disabled":
                use_writable_wandb_folders(self.save_dir)
        try:
            return super().experiment
        except Exception as err:
            if not type(err).__module__.startswith("wandb"):
                raise
            reason = (str(err).strip().splitlines() or [""])[0][:300]
            raise WandbStartError(
                f"Weights & Biases could not start the run ({type(err).__name__}: {reason}); runs are offline unless "
                "you opt in: without --trainer.logger.init_args.offline false and WANDB_MODE=online it runs offline, "
                "and `wandb sync` uploads it later"
            ) from err

    @rank_zero_only
    def finalize(self, status: str) -> None:
        super().finalize(status)
        if self._experiment is not None:
            self._experiment.finish(exit_code=0 if status == "success" else 1)
            self._experiment = None
