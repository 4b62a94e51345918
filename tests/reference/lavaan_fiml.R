# Reference values for full-information ML (missing = "ml") in pipeline/psychometrics/, computed
# with R's lavaan on two data sets with missing answers:
#
#   hs   lavaan::HolzingerSwineford1939, x1..x9, with missing values added by a seeded rule:
#        every cell missing completely at random with probability .08, and x5 and x6 missing with
#        probability .30 more when x4 is above its median (missing at random: it depends on an
#        observed value); the three-factor model.
#   bfi  psych::bfi's 25 items with their real missing answers (2,800 rows); five factors.
#
# Each is fitted with cfa(..., missing = "ml") under estimator = "ML" (observed information, as
# lavaan's default for FIML) and estimator = "MLR" (sandwich SEs, Yuan-Bentler scaled test).
#
# Rerun from the repository root (needs R, lavaan and psych, e.g. Debian's r-cran-lavaan and
# r-cran-psych):
#
#     Rscript tests/reference/lavaan_fiml.R
#
# It rewrites, next to this script:
#   lavaan_fiml_<data>.csv         the items exactly as given to lavaan (empty cell = missing)
#   lavaan_fiml_fit.csv            data, estimator, measure, value (fitMeasures)
#   lavaan_fiml_estimates.csv      data, estimator, lhs, op, rhs, est, se, std_all
#   lavaan_fiml_versions.json      R, lavaan and psych versions used

suppressPackageStartupMessages({
  library(lavaan)
  library(psych)
})

args <- commandArgs(trailingOnly = FALSE)
script <- sub("^--file=", "", args[grep("^--file=", args)])
out_dir <- if (length(script) == 1) dirname(normalizePath(script)) else "tests/reference"
out <- function(name) file.path(out_dir, name)
number <- function(x) ifelse(is.na(x), "", sprintf("%.17g", x))

hs <- lavaan::HolzingerSwineford1939[, paste0("x", 1:9)]
set.seed(20261202)
mcar <- matrix(runif(nrow(hs) * ncol(hs)) < 0.08, nrow(hs))
hs[mcar] <- NA
mar <- !is.na(hs$x4) & hs$x4 > median(hs$x4, na.rm = TRUE)
hs$x5[mar & runif(nrow(hs)) < 0.30] <- NA
hs$x6[mar & runif(nrow(hs)) < 0.30] <- NA

bfi <- psych::bfi[, 1:25]

sets <- list(
  hs = list(data = hs, model = "
    visual  =~ x1 + x2 + x3
    textual =~ x4 + x5 + x6
    speed   =~ x7 + x8 + x9
  "),
  bfi = list(data = bfi, model = "
    A =~ A1 + A2 + A3 + A4 + A5
    C =~ C1 + C2 + C3 + C4 + C5
    E =~ E1 + E2 + E3 + E4 + E5
    N =~ N1 + N2 + N3 + N4 + N5
    O =~ O1 + O2 + O3 + O4 + O5
  ")
)

measures <- c(
  "npar", "ntotal", "logl", "unrestricted.logl", "chisq", "df", "baseline.chisq",
  "baseline.df", "cfi", "tli", "rmsea", "srmr", "srmr_bentler_nomean"
)
robust <- c(
  "chisq.scaled", "chisq.scaling.factor", "baseline.chisq.scaled",
  "baseline.chisq.scaling.factor", "cfi.scaled", "tli.scaled", "rmsea.scaled", "cfi.robust",
  "tli.robust", "rmsea.robust"
)

fits <- list()
estimates <- list()
for (name in names(sets)) {
  set <- sets[[name]]
  write.csv(
    as.data.frame(lapply(set$data, number)), out(sprintf("lavaan_fiml_%s.csv", name)),
    row.names = FALSE, quote = FALSE
  )
  for (estimator in c("ML", "MLR")) {
    fit <- cfa(set$model, data = set$data, missing = "ml", estimator = estimator)
    stopifnot(lavInspect(fit, "converged"))
    wanted <- if (estimator == "MLR") c(measures, robust) else measures
    fm <- fitMeasures(fit, wanted)
    fits[[length(fits) + 1]] <- data.frame(
      data = name, estimator = estimator, measure = wanted, value = number(as.numeric(fm[wanted]))
    )
    pe <- parameterEstimates(fit, standardized = TRUE)
    estimates[[length(estimates) + 1]] <- data.frame(
      data = name, estimator = estimator, lhs = pe$lhs, op = pe$op, rhs = pe$rhs,
      est = number(pe$est), se = number(pe$se), std_all = number(pe$std.all)
    )
  }
}
write.csv(do.call(rbind, fits), out("lavaan_fiml_fit.csv"), row.names = FALSE, quote = FALSE)
write.csv(
  do.call(rbind, estimates), out("lavaan_fiml_estimates.csv"), row.names = FALSE, quote = FALSE
)

cat(sprintf(
  '{\n  "R": "%s",\n  "lavaan": "%s",\n  "psych": "%s"\n}\n',
  R.version.string, as.character(packageVersion("lavaan")), as.character(packageVersion("psych"))
), file = out("lavaan_fiml_versions.json"))
