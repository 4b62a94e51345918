"""Great Expectations as a Dagster resource.

great_expectations is imported inside `validate`, never at module level: the import costs 3 to
4 s and about 300 MB, which loading the code location must not pay.
"""

import dagster as dg
import pandas as pd


class GreatExpectations(dg.ConfigurableResource):
    """Runs a suite given as plain data (`pipeline.validate.expectations.expectation_suite`)."""

    def validate(self, frame: pd.DataFrame, suite: dict) -> dict:
        """Validate `frame` in an ephemeral GX context; the result as JSON-ready dict.

        The results follow the suite's order (GX groups them by metric otherwise), and the
        result's `meta` carries the suite's `meta` (instrument, wave) besides GX's own.
        """
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False)  # no tqdm in logs
        batch_definition = (
            context.data_sources.add_pandas("scan")
            .add_dataframe_asset("responses")
            .add_batch_definition_whole_dataframe("whole")
        )
        gx_suite = context.suites.add(
            gx.ExpectationSuite(
                name=suite["name"],
                expectations=[
                    getattr(gx.expectations, _class_name(e["type"]))(
                        **e["kwargs"], meta=e.get("meta")
                    )
                    for e in suite["expectations"]
                ],
            )
        )
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=suite["name"], data=batch_definition, suite=gx_suite)
        )
        result = definition.run(batch_parameters={"dataframe": frame}, result_format="SUMMARY")
        position = {e.id: i for i, e in enumerate(gx_suite.expectations)}
        result.results.sort(key=lambda r: position[r.expectation_config.id])
        result.meta.update(suite.get("meta", {}))
        return result.to_json_dict()


def _class_name(kind: str) -> str:
    """'expect_column_values_to_be_in_set' -> 'ExpectColumnValuesToBeInSet'."""
    return "".join(part.capitalize() for part in kind.split("_"))
