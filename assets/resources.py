"""Resources: the pipeline's settings and the IO managers of the two zones."""

import typing
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow.parquet as pq

from assets.gx_resource import GreatExpectations
from pipeline.instrument.codebook import Codebook, load_codebook
from pipeline.instrument.dictionary import PER_WAVE, Field, fields, table_of, with_field_metadata
from pipeline.lineage.files import keep_version, write_atomic
from pipeline.lineage.fingerprint import sha256_file
from pipeline.lineage.outputs import FILES, recorded
from pipeline.lineage.settings import ALL_WAVES, Settings


class ScanConfig(dg.ConfigurableResource):
    """Where the data and reports live; built from `pipeline.lineage.settings.Settings`."""

    data_dir: str
    reports_dir: str

    @property
    def settings(self) -> Settings:
        return Settings(Path(self.data_dir), Path(self.reports_dir))

    def codebook(self) -> Codebook:
        return load_codebook(self.settings.codebook_path)


class RestrictedParquetIOManager(dg.ConfigurableIOManager):
    """Stores each asset partition as `<base_dir>/<asset>/<partition>.parquet`.

    `base_dir` is the staging area inside the restricted zone. Files are written atomically,
    so a failed run never leaves half a file nor overwrites the last good one.
    """

    base_dir: str
    scan: ScanConfig  # the folders its files are recorded relative to

    def _path(self, context: dg.OutputContext | dg.InputContext, partition: str | None = None):
        name = "/".join(context.asset_key.path)
        if partition is None:
            partition = context.asset_partition_key if context.has_asset_partitions else "all"
        return Path(self.base_dir) / name / f"{partition}.parquet"

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame) -> None:
        path = write_atomic(
            self._path(context), lambda tmp: obj.to_parquet(tmp, index=False), private=True
        )
        context.add_output_metadata(stored_metadata(path, obj, Path(self.base_dir)))
        context.add_output_metadata(files_metadata(self.scan.settings, [path], context))

    def load_input(self, context: dg.InputContext) -> pd.DataFrame | dict[str, pd.DataFrame]:
        """One partition's table; {wave: table} over the partitions mapped to the input when
        the input is annotated as a dict (anonymisation, which protects all waves together)."""
        if context.has_asset_partitions and reads_every_wave(context):
            return {w: read_table(self._path(context, w)) for w in context.asset_partition_keys}
        return read_table(self._path(context))


class ShareableIOManager(dg.ConfigurableIOManager):
    """Stores a per-wave table of the output contract as `<base_dir>/<wave>/<file>`, and a
    cross-wave one as `<base_dir>/all_waves/<file>`.

    `base_dir` is data/processed, the shareable zone; `file` (`.csv` or `.parquet`) comes from
    the asset's metadata, so the file names of the output contract are declared on the assets.
    """

    base_dir: str
    scan: ScanConfig  # the folders its files are recorded relative to

    def _path(self, context: dg.OutputContext | dg.InputContext, partition: str) -> Path:
        output = context if isinstance(context, dg.OutputContext) else context.upstream_output
        return Path(self.base_dir) / partition / output.definition_metadata["file"]

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame) -> None:
        """Writes the table with its data dictionary: the descriptions as parquet field
        metadata and as the column descriptions the UI shows (a column the dictionary does not
        describe fails the write)."""
        partition = context.asset_partition_key if context.has_asset_partitions else ALL_WAVES
        path = self._path(context, partition)
        table = table_of(PER_WAVE if context.has_asset_partitions else ALL_WAVES, path.name)
        described = [] if table is None else fields(table, list(obj.columns), self.scan.codebook())
        if path.suffix == ".parquet":
            arrow = with_field_metadata(obj, described)
            write_atomic(path, lambda tmp: pq.write_table(arrow, tmp))
        else:
            write_atomic(path, lambda tmp: obj.to_csv(tmp, index=False))
        metadata = stored_metadata(path, obj, Path(self.base_dir), described)
        context.add_output_metadata(metadata)
        context.add_output_metadata(files_metadata(self.scan.settings, [path], context))

    def load_input(self, context: dg.InputContext) -> pd.DataFrame | dict[str, pd.DataFrame]:
        """One wave's table; {wave: table} over the waves mapped to the input when the input is
        annotated as a dict (a cross-wave asset, or a report that compares with earlier waves)."""
        if not context.has_asset_partitions:
            return read_table(self._path(context, ALL_WAVES))
        if reads_every_wave(context):
            return {w: read_table(self._path(context, w)) for w in context.asset_partition_keys}
        return read_table(self._path(context, context.asset_partition_key))


def reads_every_wave(context: dg.InputContext) -> bool:
    """Whether the input is annotated as a dict: {wave: table} over the waves mapped to it."""
    return typing.get_origin(context.dagster_type.typing_type) is dict


def read_table(path: Path) -> pd.DataFrame:
    """A stored table (parquet or csv), or an error that says which file is not there yet."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no stored output; materialize its wave first")
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)


def stored_metadata(
    path: Path, frame: pd.DataFrame, zone: Path, described: list[Field] | None = None
) -> dict:
    """What the UI's catalog shows of a stored table: where, its sha256, rows and columns (with
    their descriptions from the data dictionary, when `described`), and where this version
    stays when a later run overwrites `path` (`keep_version`)."""
    descriptions = {f.name: f.description for f in described or []}
    return {
        "path": dg.MetadataValue.path(str(path)),
        "version": dg.MetadataValue.path(str(keep_version(path, zone))),
        "sha256": sha256_file(path),
        "dagster/row_count": len(frame),
        "dagster/column_schema": dg.TableSchema(
            columns=[
                dg.TableColumn(str(name), str(dtype), descriptions.get(str(name)))
                for name, dtype in frame.dtypes.items()
            ]
        ),
    }


def files_metadata(settings: Settings, paths, context: dg.OutputContext | None = None) -> dict:
    """The `files` entry of every materialization: {path relative to its folder: sha256} of
    each file the asset wrote (`pipeline.lineage.outputs`), which `scan status`, `scan trace`
    and `scan verify` check against disk. An IO manager adds its table to the files the asset
    recorded."""
    earlier = context.output_metadata.get(FILES) if context is not None else None
    files = {**(earlier.value if earlier else {}), **recorded(paths, settings)}
    return {FILES: dg.MetadataValue.json(files)}


def resources_for(settings: Settings) -> dict[str, object]:
    scan = ScanConfig(data_dir=str(settings.data_dir), reports_dir=str(settings.reports_dir))
    return {
        "scan": scan,
        "restricted_io": RestrictedParquetIOManager(base_dir=str(settings.staging_dir), scan=scan),
        "shareable_io": ShareableIOManager(base_dir=str(settings.processed_dir), scan=scan),
        "gx": GreatExpectations(),
    }
