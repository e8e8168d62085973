"""The `modelport` command: a server's models, predictions and jobs from a shell.

Answers go to stdout (`--output table`, the default, or `json`: the server's JSON as sent;
`--format` for `datasets score`, whose --output is the run's output folder);
progress bars and messages to stderr. An error prints its title and detail (and a request's row
errors) on stderr and exits with 1; `--output json` also prints the problem body on stdout.
"""

import io
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from . import __version__
from .client import Client
from .config import load_settings
from .errors import ModelportError

OUTPUTS = ("table", "json")
SHOWN_ROW_ERRORS = 20
stdout = Console(soft_wrap=True)
stderr = Console(stderr=True)


class State:
    """What the options chose; the client is made on first use."""

    def __init__(self) -> None:
        self.url: str | None = None
        self.output = "table"
        self.has_token = False
        self._client: Client | None = None

    @property
    def client(self) -> Client:
        if self._client is None:
            settings = load_settings(self.url)
            self.has_token = bool(settings.token)
            self.config_path = settings.config_path
            self._client = Client(settings.url, settings.token)
        return self._client


def _set_output(ctx: click.Context, param, value) -> None:
    if value is not None:
        ctx.ensure_object(State).output = value


def _set_url(ctx: click.Context, param, value) -> None:
    if value is not None:
        ctx.ensure_object(State).url = value


def common(command, *, output: tuple[str, ...] = ("--output", "-o")):
    """--output and --url, taken before or after the command's name (a command whose --output
    is something else names the format option otherwise: `output=("--format", "-f")`)."""
    command = click.option(
        *output, "answer_format", type=click.Choice(OUTPUTS), default=None, expose_value=False,
        callback=_set_output, help="table (the default) or json.",
    )(command)  # fmt: skip
    return click.option(
        "--url", default=None, expose_value=False, callback=_set_url,
        help="The server (default: MODELPORT_URL, the config file's url, http://127.0.0.1:8000).",
    )(command)  # fmt: skip


def common_with_format(command):
    """common() for a command whose --output is a path: the format is --format (or -o before
    the command's name: `modelport -o json datasets score ...`)."""
    return common(command, output=("--format", "-f"))


def _report(error: ModelportError, state: State | None) -> None:
    """The error's title and detail (and row errors) on stderr; the body on stdout for json."""
    click.echo(f"Error: {error.title}" + (f": {error.detail}" if error.detail else ""), err=True)
    for item in error.errors[:SHOWN_ROW_ERRORS]:
        message = item.get("message") if isinstance(item, dict) else None
        click.echo(f"  {message or json.dumps(item)}", err=True)
    if len(error.errors) > SHOWN_ROW_ERRORS:
        click.echo(f"  ... and {len(error.errors) - SHOWN_ROW_ERRORS} more", err=True)
    if error.status == 401 and state is not None and not state.has_token:
        click.echo(f'Set MODELPORT_TOKEN, or `token = "..."` in {state.config_path}.', err=True)
    if state is not None and state.output == "json" and error.body:
        click.echo(json.dumps(error.body, indent=2))


class _Command(click.Group):
    """The top group: a ModelportError anywhere below ends the command with exit status 1."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ModelportError as error:
            _report(error, ctx.find_object(State))
            ctx.exit(1)


def _state() -> State:
    return click.get_current_context().ensure_object(State)


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _records(rows: list[dict], columns: list[str], title: str | None = None) -> Table:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(_cell(row.get(column)) for column in columns))
    return table


def _fields(item: dict, names: list[str] | None = None) -> Table:
    table = Table(show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for name in names or list(item):
        if name in item:
            table.add_row(name, _cell(item[name]))
    return table


def emit(data, as_table: Callable[[object], Table]) -> None:
    """The answer: the server's JSON as sent, or a table of it."""
    if _state().output == "json":
        click.echo(json.dumps(data, indent=2))
    else:
        stdout.print(as_table(data))


@contextmanager
def transfer_bar(label: str) -> Iterator[Callable[[int, int | None], None]]:
    """A progress bar of bytes on stderr; yields the client's progress callback."""
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
               TransferSpeedColumn())  # fmt: skip
    with Progress(*columns, console=stderr) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def wait_with_bar(client: Client, job: dict, timeout: float | None, *, kind: str = "job") -> dict:
    """Wait for the job (or dataset run, `kind="dataset"`) with a bar of its `progress` (rows
    done of rows counted) on stderr."""
    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
               TimeElapsedColumn())  # fmt: skip
    waiter = client.wait_dataset if kind == "dataset" else client.wait
    with Progress(*columns, console=stderr) as bar:
        task = bar.add_task(f"{kind} {job['id']}", total=1.0)

        def show(state: dict) -> None:
            total = state.get("rows_total")
            rows = f"{state.get('rows_done', 0)}/{total} rows" if total else "counting rows"
            bar.update(
                task,
                completed=state.get("progress") or 0.0,
                description=f"{kind} {state['status']}: {rows}",
            )

        return waiter(job, timeout=timeout, on_update=show)


JOB_FIELDS = ["id", "model", "version", "status", "progress", "rows_total", "rows_done",
              "rows_failed", "input_name", "failure_reason", "created_at", "finished_at",
              "links"]  # fmt: skip
VERSION_FIELDS = ["model", "number", "status", "status_reason", "is_default", "format",
                  "sha256", "size_bytes", "notes", "created_by", "created_at"]  # fmt: skip


DATASET_FIELDS = ["id", "model", "version", "status", "progress", "rows_total", "rows_done",
                  "rows_failed", "partitions_total", "partitions_done", "input", "output",
                  "errors_output", "scheduler", "workers", "failure_reason", "created_at",
                  "finished_at"]  # fmt: skip


def _finished(job: dict, kind: str = "job") -> None:
    """Exit 1 (after showing the job or run) when it did not succeed."""
    if job["status"] != "succeeded":
        reason = job.get("failure_reason") or ""
        click.echo(f"Error: the {kind} {job['status']}" + (f": {reason}" if reason else ""),
                   err=True)  # fmt: skip
        raise click.exceptions.Exit(1)


def _model_and_number(spec: str) -> tuple[str, int | None]:
    """NAME or NAME:VERSION."""
    name, _, number = spec.partition(":")
    if not number:
        return name, None
    if not number.isdigit():
        raise click.BadParameter(f"{spec!r}: the version after ':' is a number, e.g. {name}:2.")
    return name, int(number)


# --- the commands


@click.group(cls=_Command, name="modelport")
@click.version_option(__version__, prog_name="modelport")
@common
def cli() -> None:
    """A Modelport server from the shell. The token comes from MODELPORT_TOKEN or the config
    file (~/.config/modelport/config.toml: url = "...", token = "...")."""
    _state()


@cli.group()
def models() -> None:
    """Registered models."""


@models.command("list")
@common
def models_list() -> None:
    """Every model, with its default and latest version."""
    columns = ["name", "task", "default_version", "latest_version", "description"]
    emit(_state().client.models(), lambda data: _records(data, columns))


@models.command("show")
@click.argument("name")
@common
def models_show(name: str) -> None:
    """One model: its input schema, versions and audit trail."""
    emit(_state().client.model(name), _fields)


def _prediction_table(body: dict) -> Table:
    single = "prediction" in body
    predictions = [body["prediction"]] if single else body.get("predictions", [])
    probabilities = body.get("probabilities")
    if single and probabilities is not None:
        probabilities = [probabilities]
    problems: dict[int, list[str]] = {}
    for error in body.get("errors", []):
        problems.setdefault(error["row"], []).append(error["message"])
    rows = []
    for index, value in enumerate(predictions):
        row = {"row": index, "prediction": value, "error": "; ".join(problems.get(index, []))}
        if probabilities is not None:
            row["probabilities"] = probabilities[index]
        rows.append(row)
    columns = ["row", "prediction"] + (["probabilities"] if probabilities is not None else [])
    title = (f"{body['model']} v{body['version']}: {body['rows']} rows, "
             f"{body['rows_failed']} failed")  # fmt: skip
    return _records(rows, columns + ["error"], title=title)


@cli.command()
@click.argument("name")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--version", "number", type=int, help="Score with this version, not the default.")
@click.option("--probabilities", is_flag=True, help="Classifiers: per-class probabilities too.")
@common
def predict(name: str, file: str, number: int | None, probabilities: bool) -> None:
    """Score the rows of FILE (CSV, JSON, JSON lines or Parquet, by its name; - reads JSON from
    stdin)."""
    client = _state().client
    if file == "-":
        source: io.BytesIO | str = io.BytesIO(sys.stdin.buffer.read())
        filename = "stdin.json"
    else:
        if not Path(file).is_file():
            raise click.BadParameter(f"{file}: no such file", param_hint="FILE")
        source, filename = file, None
    body = client.predict_file(
        name, source, filename=filename, version=number, probabilities=probabilities
    )
    if "id" in body and "status" in body:  # over the server's synchronous bounds: a job
        click.echo(
            f"The input became background job {body['id']}: `modelport jobs wait {body['id']}`.",
            err=True,
        )
        emit(body, lambda data: _fields(data, JOB_FIELDS))
        return
    if body.get("ignored_fields"):
        click.echo(f"Fields the model does not use: {', '.join(body['ignored_fields'])}", err=True)
    emit(body, _prediction_table)


@cli.group()
def jobs() -> None:
    """Background jobs: submit a file, follow it, download its predictions."""


@jobs.command("submit")
@click.argument("name")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--version", "number", type=int, help="Score with this version, not the default.")
@click.option("--id-column", help="An input column to copy into the results.")
@click.option("--wait", "should_wait", is_flag=True, help="Follow the job until it finishes.")
@click.option("--timeout", type=float, help="With --wait: give up waiting after this many s.")
@common
def jobs_submit(
    name: str,
    file: str,
    number: int | None,
    id_column: str | None,
    should_wait: bool,
    timeout: float | None,
) -> None:
    """Score FILE in the background; with --wait, follow it (exit 1 unless it succeeds)."""
    client = _state().client
    with transfer_bar(f"upload {Path(file).name}") as progress:
        job = client.submit_job(name, file, version=number, id_column=id_column, progress=progress)
    if should_wait:
        job = wait_with_bar(client, job, timeout)
    emit(job, lambda data: _fields(data, JOB_FIELDS))
    if should_wait:
        _finished(job)


@jobs.command("show")
@click.argument("job_id")
@common
def jobs_show(job_id: str) -> None:
    """A job's state and progress."""
    emit(_state().client.job(job_id), lambda data: _fields(data, JOB_FIELDS))


@jobs.command("wait")
@click.argument("job_id")
@click.option("--timeout", type=float, help="Give up waiting after this many seconds.")
@common
def jobs_wait(job_id: str, timeout: float | None) -> None:
    """Follow a job until it finishes (exit 1 unless it succeeds)."""
    client = _state().client
    job = wait_with_bar(client, client.job(job_id), timeout)
    emit(job, lambda data: _fields(data, JOB_FIELDS))
    _finished(job)


@jobs.command("cancel")
@click.argument("job_id")
@common
def jobs_cancel(job_id: str) -> None:
    """Cancel a job that has not finished."""
    emit(_state().client.cancel(job_id), lambda data: _fields(data, JOB_FIELDS))


@jobs.command("download")
@click.argument("job_id")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option(
    "--format", "kind", type=click.Choice(["csv", "parquet"]),
    help="Default: parquet for a .parquet PATH, else csv.",
)  # fmt: skip
@click.option("--errors", "row_errors", is_flag=True, help="The row errors (CSV) instead.")
@common
def jobs_download(job_id: str, path: str, kind: str | None, row_errors: bool) -> None:
    """Save a succeeded job's predictions (row, prediction, id) to PATH."""
    client = _state().client
    with transfer_bar(f"download {Path(path).name}") as progress:
        if row_errors:
            saved = client.download_errors(job_id, path, progress=progress)
        else:
            saved = client.download(job_id, path, format=kind, progress=progress)
    result = {"job": job_id, "path": str(saved), "bytes": saved.stat().st_size}
    emit(result, _fields)


@cli.group()
def datasets() -> None:
    """Parquet datasets scored where they live on the server's Dask cluster (staff)."""


@datasets.command("score")
@click.argument("model", metavar="NAME[:VERSION]")
@click.option("--input", "source", required=True, help="A Parquet file, folder or glob (server).")
@click.option("--output", "target", required=True, help="A new folder for the predictions.")
@click.option("--errors", help="The bad rows' folder (default OUTPUT/_errors).")
@click.option("--id-column", help="An input column copied into both outputs as 'id'.")
@click.option("--scheduler", help="One of the server's DATASET_SCHEDULERS (default: local).")
@click.option("--partition-rows", type=click.IntRange(min=1), help="Rows per partition at most.")
@click.option(
    "--probabilities/--no-probabilities", default=None,
    help="A classifier's class probabilities (default: with them).",
)  # fmt: skip
@click.option("--wait", "should_wait", is_flag=True, help="Follow the run until it finishes.")
@click.option("--timeout", type=float, help="With --wait: give up waiting after this many s.")
@common_with_format
def datasets_score(
    model: str,
    source: str,
    target: str,
    errors: str | None,
    id_column: str | None,
    scheduler: str | None,
    partition_rows: int | None,
    probabilities: bool | None,
    should_wait: bool,
    timeout: float | None,
) -> None:
    """Score a dataset the server can read with NAME (its default version) or NAME:VERSION, in
    the background; with --wait, follow it (exit 1 unless it succeeds). --output is the run's
    output folder here: the answer's format is --format (or -o before `datasets`)."""
    name, number = _model_and_number(model)
    client = _state().client
    run = client.score_dataset(
        name, source, target, version=number, errors=errors, id_column=id_column,
        scheduler=scheduler, partition_rows=partition_rows, probabilities=probabilities,
    )  # fmt: skip
    if should_wait:
        run = wait_with_bar(client, run, timeout, kind="dataset")
    emit(run, lambda data: _fields(data, DATASET_FIELDS))
    if should_wait:
        _finished(run, "dataset run")


@datasets.command("show")
@click.argument("run_id")
@common
def datasets_show(run_id: str) -> None:
    """A dataset run's state and progress."""
    emit(_state().client.dataset_run(run_id), lambda data: _fields(data, DATASET_FIELDS))


@datasets.command("wait")
@click.argument("run_id")
@click.option("--timeout", type=float, help="Give up waiting after this many seconds.")
@common
def datasets_wait(run_id: str, timeout: float | None) -> None:
    """Follow a dataset run until it finishes (exit 1 unless it succeeds)."""
    client = _state().client
    run = wait_with_bar(client, client.dataset_run(run_id), timeout, kind="dataset")
    emit(run, lambda data: _fields(data, DATASET_FIELDS))
    _finished(run, "dataset run")


@datasets.command("list")
@click.option("--model", help="Only runs of this model.")
@click.option("--status", help="Only runs in this state.")
@common
def datasets_list(model: str | None, status: str | None) -> None:
    """Every dataset run, newest first."""
    columns = ["id", "model", "version", "status", "progress", "rows_done", "rows_failed",
               "output", "created_at"]  # fmt: skip
    runs = _state().client.dataset_runs(model=model, status=status)
    emit(runs, lambda data: _records(data, columns))


@cli.group()
def versions() -> None:
    """A model's versions: list, show, upload."""


@versions.command("list")
@click.argument("name")
@common
def versions_list(name: str) -> None:
    """A model's versions, newest first."""
    columns = ["number", "status", "is_default", "format", "serving", "created_at"]

    def table(data):
        rows = [{**item, "serving": item["serving"]["path"]} for item in data]
        return _records(rows, columns)

    emit(_state().client.versions(name), table)


@versions.command("show")
@click.argument("name")
@click.argument("number", type=int)
@common
def versions_show(name: str, number: int) -> None:
    """One version: status, schema, how it is served."""
    emit(_state().client.version(name, number), _fields)


@versions.command("upload")
@click.argument("name")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--sample", type=click.Path(exists=True, dir_okay=False),
    help="A CSV of reference rows for the server's checks.",
)  # fmt: skip
@click.option("--notes", default="", help="What changed in this version.")
@click.option("--description", default="", help="The model's description, when it is new.")
@click.option("--promote", "then_promote", is_flag=True, help="Make it the default too.")
@common
def versions_upload(
    name: str, file: str, sample: str | None, notes: str, description: str, then_promote: bool
) -> None:
    """Upload an artifact (.skops) as a new version of NAME (staff only)."""
    client = _state().client
    with transfer_bar(f"upload {Path(file).name}") as progress:
        version = client.upload_version(
            name, file, sample=sample, notes=notes, description=description, progress=progress
        )
    if then_promote:
        version = client.promote(name, version["number"])
    emit(version, lambda data: _fields(data, VERSION_FIELDS))


@cli.command()
@click.argument("name")
@click.argument("number", type=int)
@common
def promote(name: str, number: int) -> None:
    """Make version NUMBER the default of NAME (staff only)."""
    emit(_state().client.promote(name, number), lambda data: _fields(data, VERSION_FIELDS))


@cli.command()
@click.argument("name")
@common
def rollback(name: str) -> None:
    """Return NAME to its default before the last promotion (staff only)."""
    emit(_state().client.rollback(name), _fields)
