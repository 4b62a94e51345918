# A real public instrument through the whole pipeline: psych's `bfi` as a one-wave scan, and what
# R's psych and lavaan compute on it (reference values for tests/test_public_instrument.py).
#
# The instrument: psych::bfi, 25 personality items (answers 1..6) in five scales of five items,
# A (agreeableness), C (conscientiousness), E (extraversion), N (neuroticism), O (openness), with
# the reverse keys of ?psych::bfi (A1, C4, C5, E1, E2, O2, O5), 2800 respondents, gender 1/2,
# education 1..5 (223 missing) and age in years. bfi has no company, no linkage code and no survey
# platform metadata, so this script adds, in row order:
#   respondent  a linkage code r0001 .. r2800 (unique)
#   company     synthetic companies of 28 respondents each: rows 1-28 are c001, ..., c100
#
# Rows: the data set keeps all 2800 rows, and the statistics here are computed on exactly the rows
# the pipeline keeps (pipeline/validate/quality.py with tests/data/bfi/raw/codebook.yaml). Of its quality
# rules only these apply to a scan without platform metadata, register or test codes:
#   unreadable_value, out_of_range  none: every item is 1..6 or missing, gender 1/2, education
#                                   1..5 or missing, age a whole number (checked below);
#   duplicate                       none: every linkage code occurs once (checked below);
#   straightliner                   4 rows: at least 80% of the 25 items answered, all with the
#                                   same answer (quality.straightline_min_share's default 0.8;
#                                   bfi rows 562, 1430, 1555 and 2043: all 5s or all 1s).
# The pipeline quarantines those 4 and keeps 2796; so does this script (the rule is recomputed
# here, not hard-coded). Preview, test, unknown_company, outside_window, incomplete and speeder
# are not applicable (no platform columns, no register, no test codes, no fieldwork window).
#
# What is computed, on the 2796 kept rows:
#   psych::alpha(raw items, keys = the scale's reverse items), per scale: raw_alpha, std.alpha,
#     average_r, and per item n, mean, sd, r.drop (item statistics are of the reversed item, as
#     psych reports them with keys) and raw_alpha if the item is dropped. psych reverses keyed
#     items as max + min - x over the data (here 6 + 1 - x), which is the codebook's recoding;
#     the script checks that alpha on the recoded items gives the same numbers.
#   psych::omega(recoded items, nfactors = 1, plot = FALSE)$omega.tot, per scale: the call
#     pipeline/psychometrics/reliability.py's omega_total reproduces (minres on pairwise correlations, flip).
#   lavaan::cfa() of the measurement model the pipeline fits (assets/psychometrics.py,
#     measurement_model): each scale a factor on its items, reverse-keyed items recoded 7 - x,
#     factors correlated, estimator = "ML" (lavaan's defaults: likelihood "normal", marker
#     variables, listwise deletion of incomplete rows): chisq, df, cfi, tli, rmsea, srmr, nobs,
#     and the standardised loadings (standardizedSolution, op "=~").
#
# Rerun from the repository root (needs R with psych and lavaan, e.g. Debian's r-cran-psych and
# r-cran-lavaan):
#
#     Rscript tests/reference/bfi_instrument.R
#
# It rewrites:
#   tests/data/bfi/raw/2016-T0/bfi.csv          the wave's export: respondent, company, A1..O5,
#                                               gender, education, age (missing as empty)
#   tests/reference/bfi_instrument_reliability.csv  scale, n_rows, n_any, k, raw_alpha, std_alpha,
#                                               average_r, omega_tot
#   tests/reference/bfi_instrument_items.csv    scale, item, reversed, n, mean, sd, r_drop,
#                                               raw_alpha_if_dropped
#   tests/reference/bfi_instrument_cfa_fit.csv  measure, value (nobs, chisq, df, cfi, tli, rmsea,
#                                               srmr)
#   tests/reference/bfi_instrument_cfa_loadings.csv  factor, item, std_loading
#   tests/reference/bfi_instrument_versions.json     R, psych and lavaan versions, rows kept
# The committed files were made with R 4.2.2 Patched, psych 2.2.9 and lavaan 0.6-14 (Debian).
# Numbers are written with 17 significant digits (sprintf %.17g): a double survives the round trip.

suppressPackageStartupMessages({
  library(psych)
  library(lavaan)
})

ref_dir <- "tests/reference"
wave_dir <- "tests/data/bfi/raw/2016-T0"
if (!dir.exists(ref_dir)) stop("run from the repository root: Rscript tests/reference/bfi_instrument.R")
dir.create(wave_dir, recursive = TRUE, showWarnings = FALSE)

fmt <- function(x) sprintf("%.17g", x)

scales <- list(
  A = list(items = paste0("A", 1:5), reverse = "A1"),
  C = list(items = paste0("C", 1:5), reverse = c("C4", "C5")),
  E = list(items = paste0("E", 1:5), reverse = c("E1", "E2")),
  N = list(items = paste0("N", 1:5), reverse = character(0)),
  O = list(items = paste0("O", 1:5), reverse = c("O2", "O5"))
)
items <- unlist(lapply(scales, `[[`, "items"), use.names = FALSE)
reversed <- unlist(lapply(scales, `[[`, "reverse"), use.names = FALSE)
low <- 1
high <- 6

# --- the export ---------------------------------------------------------------------------------
bfi <- psych::bfi
stopifnot(nrow(bfi) == 2800, identical(colnames(bfi)[1:25], items))
export <- data.frame(
  respondent = sprintf("r%04d", seq_len(nrow(bfi))),
  company = sprintf("c%03d", (seq_len(nrow(bfi)) - 1) %/% 28 + 1),
  bfi[, c(items, "gender", "education", "age")]
)
write.csv(export, file.path(wave_dir, "bfi.csv"), row.names = FALSE, quote = FALSE, na = "")

# --- the rows the pipeline keeps ----------------------------------------------------------------
x <- as.matrix(export[, items])
stopifnot(
  all(is.na(x) | x %in% low:high), # out_of_range: nothing
  all(export$gender %in% 1:2),
  all(is.na(export$education) | export$education %in% 1:5),
  all(export$age == round(export$age)),
  !anyDuplicated(export$respondent) # duplicate: nothing
)
answered <- rowSums(!is.na(x))
lowest <- suppressWarnings(apply(x, 1, min, na.rm = TRUE))
highest <- suppressWarnings(apply(x, 1, max, na.rm = TRUE))
straightliner <- answered >= 0.8 * length(items) & lowest == highest
stopifnot(sum(straightliner) == 4)
kept <- export[!straightliner, ]

raw <- kept[, items]
recoded <- raw
for (item in reversed) recoded[[item]] <- low + high - recoded[[item]]

# --- psych: alpha and omega per scale -----------------------------------------------------------
scale_rows <- list()
item_rows <- list()
for (name in names(scales)) {
  s <- scales[[name]]
  keys <- if (length(s$reverse)) s$reverse else NULL
  a <- psych::alpha(raw[, s$items], keys = keys, warnings = FALSE)
  check <- psych::alpha(recoded[, s$items], warnings = FALSE)
  stopifnot(
    isTRUE(all.equal(a$total, check$total, tolerance = 1e-12)),
    isTRUE(all.equal(as.matrix(a$item.stats), as.matrix(check$item.stats), tolerance = 1e-12,
                     check.attributes = FALSE))
  )
  o <- suppressWarnings(suppressMessages(
    psych::omega(recoded[, s$items], nfactors = 1, plot = FALSE)
  ))
  scale_rows[[name]] <- data.frame(
    scale = name,
    n_rows = nrow(raw),
    n_any = sum(rowSums(!is.na(raw[, s$items])) > 0),
    k = length(s$items),
    raw_alpha = fmt(a$total$raw_alpha),
    std_alpha = fmt(a$total$std.alpha),
    average_r = fmt(a$total$average_r),
    omega_tot = fmt(o$omega.tot)
  )
  item_rows[[name]] <- data.frame(
    scale = name,
    item = s$items,
    reversed = ifelse(s$items %in% s$reverse, "True", "False"),
    n = a$item.stats$n,
    mean = fmt(a$item.stats$mean),
    sd = fmt(a$item.stats$sd),
    r_drop = fmt(a$item.stats$r.drop),
    raw_alpha_if_dropped = fmt(a$alpha.drop$raw_alpha)
  )
}
write.csv(do.call(rbind, scale_rows), file.path(ref_dir, "bfi_instrument_reliability.csv"),
          row.names = FALSE, quote = FALSE)
write.csv(do.call(rbind, item_rows), file.path(ref_dir, "bfi_instrument_items.csv"),
          row.names = FALSE, quote = FALSE)

# --- lavaan: the measurement model --------------------------------------------------------------
model <- paste(
  vapply(names(scales), function(n) paste(n, "=~", paste(scales[[n]]$items, collapse = " + ")), ""),
  collapse = "\n"
)
fit <- cfa(model, data = recoded, estimator = "ML")
stopifnot(lavInspect(fit, "converged"))

measures <- c("chisq", "df", "cfi", "tli", "rmsea", "srmr")
fm <- fitMeasures(fit, measures)
fit_table <- data.frame(
  measure = c("nobs", measures),
  value = c(as.character(lavInspect(fit, "nobs")), fmt(as.numeric(fm[measures])))
)
write.csv(fit_table, file.path(ref_dir, "bfi_instrument_cfa_fit.csv"), row.names = FALSE,
          quote = FALSE)

std <- standardizedSolution(fit)
std <- std[std$op == "=~", ]
loadings <- data.frame(factor = std$lhs, item = std$rhs, std_loading = fmt(std$est.std))
write.csv(loadings, file.path(ref_dir, "bfi_instrument_cfa_loadings.csv"), row.names = FALSE,
          quote = FALSE)

writeLines(c(
  "{",
  sprintf('  "R": "%s",', R.version.string),
  sprintf('  "psych": "%s",', as.character(packageVersion("psych"))),
  sprintf('  "lavaan": "%s",', as.character(packageVersion("lavaan"))),
  sprintf('  "raw_rows": %d,', nrow(export)),
  sprintf('  "kept_rows": %d,', nrow(kept)),
  sprintf('  "straightliner": %d,', sum(straightliner)),
  sprintf('  "cfa_nobs": %d,', lavInspect(fit, "nobs")),
  sprintf('  "script": "%s"', "tests/reference/bfi_instrument.R"),
  "}"
), file.path(ref_dir, "bfi_instrument_versions.json"))
cat("R:", R.version.string, " psych:", as.character(packageVersion("psych")),
    " lavaan:", as.character(packageVersion("lavaan")), " kept:", nrow(kept), "of", nrow(export),
    "\n")
