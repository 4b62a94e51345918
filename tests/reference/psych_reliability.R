# Reference values for pipeline/psychometrics/reliability.py, computed with R's psych on psych's own data.
#
# Fixtures committed here were generated with R 4.2.2 Patched (2022-11-10 r83330) and psych 2.2.9
# (Debian's r-cran-psych, which also installs psychTools for `epi`); the script writes the versions
# it ran with to psych_reliability_versions.json.
#
# Rerun from the repository root (needs R and psych, e.g. Debian's r-cran-psych):
#
#     Rscript tests/reference/psych_reliability.R
#
# It rewrites, next to this script:
#   psych_<dataset>.csv           the items exactly as given to psych (already reverse-coded, NA empty)
#   psych_reliability_scales.csv  per dataset: n, k, raw_alpha, std.alpha, average_r, omega.tot
#   psych_reliability_items.csv   per item: n, mean, sd, r.drop, raw_alpha when the item is dropped
#   psych_reliability_versions.json  R and psych versions used
#
# Reverse-keyed items are recoded here (min + max - x) before psych sees them, because the
# Python side receives recoded items (pipeline.instrument.scoring.recode_items). psych::alpha then needs no
# keys. The epi items are not a keyed scale: several load negatively, which exercises omega's
# `flip` (items with a negative loading are reversed before omega.tot is computed).
# Numbers are written with 17 significant digits (sprintf %.17g): a double survives the round trip.

suppressPackageStartupMessages(library(psych))

out_dir <- "tests/reference"
if (!dir.exists(out_dir)) stop("run from the repository root: Rscript tests/reference/psych_reliability.R")

reverse <- function(x, low, high) low + high - x

datasets <- list(
  # Big Five inventory (2800 persons, 1..6, with missing answers); A1 is reverse-keyed.
  bfi_agreeableness = within(psych::bfi[, paste0("A", 1:5)], A1 <- reverse(A1, 1, 6)),
  # C4 and C5 are reverse-keyed.
  bfi_conscientiousness = within(psych::bfi[, paste0("C", 1:5)], {
    C4 <- reverse(C4, 1, 6)
    C5 <- reverse(C5, 1, 6)
  }),
  # No reverse-keyed items.
  bfi_neuroticism = psych::bfi[, paste0("N", 1:5)],
  # Items on very different scales (raw alpha far from standardised alpha); SATQ has 13 NAs.
  sat_act = psych::sat.act[, c("ACT", "SATV", "SATQ")],
  # Eysenck Personality Inventory (psychTools, installed with psych), 0/1 items: V1..V10.
  epi_v1_v10 = psychTools::epi[, paste0("V", 1:10)]
)

fmt <- function(x) sprintf("%.17g", x)

scale_rows <- list()
item_rows <- list()
for (name in names(datasets)) {
  x <- datasets[[name]]
  write.csv(x, file.path(out_dir, paste0("psych_", name, ".csv")), row.names = FALSE, na = "")

  a <- psych::alpha(x, warnings = FALSE)
  o <- suppressWarnings(suppressMessages(psych::omega(x, nfactors = 1, plot = FALSE)))

  scale_rows[[name]] <- data.frame(
    dataset = name,
    n_rows = nrow(x),
    n_any = sum(rowSums(!is.na(x)) > 0),
    k = ncol(x),
    raw_alpha = fmt(a$total$raw_alpha),
    std_alpha = fmt(a$total$std.alpha),
    average_r = fmt(a$total$average_r),
    omega_tot = fmt(o$omega.tot)
  )
  item_rows[[name]] <- data.frame(
    dataset = name,
    item = colnames(x),
    n = a$item.stats$n,
    mean = fmt(a$item.stats$mean),
    sd = fmt(a$item.stats$sd),
    r_drop = fmt(a$item.stats$r.drop),
    raw_alpha_if_dropped = fmt(a$alpha.drop$raw_alpha)
  )
}

write.csv(do.call(rbind, scale_rows), file.path(out_dir, "psych_reliability_scales.csv"),
          row.names = FALSE, quote = FALSE)
write.csv(do.call(rbind, item_rows), file.path(out_dir, "psych_reliability_items.csv"),
          row.names = FALSE, quote = FALSE)
writeLines(c(
  "{",
  sprintf('  "r": "%s",', R.version.string),
  sprintf('  "psych": "%s",', as.character(packageVersion("psych"))),
  sprintf('  "script": "%s"', "tests/reference/psych_reliability.R"),
  "}"
), file.path(out_dir, "psych_reliability_versions.json"))
cat("R:", R.version.string, " psych:", as.character(packageVersion("psych")), "\n")
