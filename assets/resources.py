"""Resources: the pipeline's settings and the IO manager of the restricted zone."""

import os
import tempfile
from pathlib import Path

import dagster as dg
import pandas as pd

from pipeline.codebook import Codebook, load_codebook
from pipeline.settings import Settings


class ScanConfig(dg.ConfigurableResource):
    """Where the data and reports live; built from `pipeline.settings.Settings`."""

    data_dir: str
    reports_dir: str

    @property
    def settings(self) -> Settings:
        return Settings(Path(self.data_dir), Path(self.reports_dir))

    def codebook(self) -> Codebook:
        return load_codebook(self.settings.codebook_path)


class RestrictedParquetIOManager(dg.ConfigurableIOManager):
    """Stores each asset partition as `<base_dir>/<asset>/<partition>.parquet`.

    `base_dir` is the staging area inside the restricted zone. A file is written to a
    temporary name and renamed into place, so a failed run never leaves half a file.
    """

    base_dir: str

    def _path(self, context: dg.OutputContext | dg.InputContext) -> Path:
        name = "/".join(context.asset_key.path)
        partition = context.asset_partition_key if context.has_asset_partitions else "all"
        return Path(self.base_dir) / name / f"{partition}.parquet"

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame) -> None:
        path = self._path(context)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            obj.to_parquet(tmp, index=False)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        context.add_output_metadata({"path": dg.MetadataValue.path(str(path))})

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        path = self._path(context)
        if not path.exists():
            raise FileNotFoundError(
                f"{path}: no stored output for {context.asset_key}; run it first"
            )
        return pd.read_parquet(path)


def resources_for(settings: Settings) -> dict[str, object]:
    return {
        "scan": ScanConfig(data_dir=str(settings.data_dir), reports_dir=str(settings.reports_dir)),
        "restricted_io": RestrictedParquetIOManager(base_dir=str(settings.staging_dir)),
    }
