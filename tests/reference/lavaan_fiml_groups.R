# Reference values for multi-group full-information ML (missing = "ml") in
# pipeline/psychometrics/, computed with R's lavaan: the invariance levels of the three-factor
# model on lavaan::HolzingerSwineford1939 with group = "school", after missing values were added
# by a seeded rule (every cell missing completely at random with probability .10, and x5 and x6
# missing with probability .30 more when x4 is above its median: missing at random).
#
# Each level (configural; metric: group.equal = "loadings"; scalar: c("loadings", "intercepts"))
# is fitted with cfa(..., group = "school") under estimator = "ML" and "MLR", with missing = "ml"
# and with missing = "listwise" (complete rows only: the robust CFI, TLI and RMSEA then are
# Brosseau-Liard and Savalei's, not the FIML correction), and the single-group model (level
# "single", no group) the same ways.
#
# Rerun from the repository root (needs R and lavaan, e.g. Debian's r-cran-lavaan):
#
#     Rscript tests/reference/lavaan_fiml_groups.R
#
# It rewrites, next to this script:
#   lavaan_fiml_groups_data.csv       school and x1..x9 as given to lavaan (empty cell = missing)
#   lavaan_fiml_groups_fit.csv        level, missing, estimator, measure, value (fitMeasures)
#   lavaan_fiml_groups_estimates.csv  level, missing, estimator, group, lhs, op, rhs, est, se
#   lavaan_fiml_groups_score.csv      level, partial, lhs, op, rhs, group, X2: lavTestScore's
#                                     univariate score test of each equality constraint (named
#                                     by its parameter in the later group; FIML, ML) of the
#                                     metric and scalar levels, and of the scalar level with the
#                                     intercept of x3 free in both schools (group.partial)
#   lavaan_fiml_groups_partial.csv    measure, value: fitMeasures of that partial scalar model
#   lavaan_fiml_groups_versions.json  R and lavaan versions used

suppressPackageStartupMessages(library(lavaan))

args <- commandArgs(trailingOnly = FALSE)
script <- sub("^--file=", "", args[grep("^--file=", args)])
out_dir <- if (length(script) == 1) dirname(normalizePath(script)) else "tests/reference"
out <- function(name) file.path(out_dir, name)
number <- function(x) ifelse(is.na(x), "", sprintf("%.17g", x))

hs <- lavaan::HolzingerSwineford1939[, c("school", paste0("x", 1:9))]
items <- paste0("x", 1:9)
set.seed(20261203)
mcar <- matrix(runif(nrow(hs) * 9) < 0.10, nrow(hs))
values <- as.matrix(hs[, items])
values[mcar] <- NA
hs[, items] <- values
mar <- !is.na(hs$x4) & hs$x4 > median(hs$x4, na.rm = TRUE)
hs$x5[mar & runif(nrow(hs)) < 0.30] <- NA
hs$x6[mar & runif(nrow(hs)) < 0.30] <- NA

model <- "
  visual  =~ x1 + x2 + x3
  textual =~ x4 + x5 + x6
  speed   =~ x7 + x8 + x9
"
levels <- list(
  configural = "",
  metric = "loadings",
  scalar = c("loadings", "intercepts"),
  single = ""
)
measures <- c(
  "npar", "ntotal", "logl", "unrestricted.logl", "chisq", "df", "baseline.chisq",
  "baseline.df", "cfi", "tli", "rmsea", "srmr"
)
robust <- c("chisq.scaled", "chisq.scaling.factor", "cfi.robust", "tli.robust", "rmsea.robust")

write.csv(
  data.frame(school = hs$school, lapply(hs[, items], number)),
  out("lavaan_fiml_groups_data.csv"), row.names = FALSE, quote = FALSE
)
fits <- list()
estimates <- list()
for (level in names(levels)) {
  for (missing in c("ml", "listwise")) {
    for (estimator in c("ML", "MLR")) {
      group <- if (level == "single") NULL else "school"
      fit <- cfa(model, data = hs, group = group, group.equal = levels[[level]],
                 missing = missing, estimator = estimator)
      stopifnot(lavInspect(fit, "converged"))
      wanted <- if (estimator == "MLR") c(measures, robust) else measures
      fm <- fitMeasures(fit, wanted)
      fits[[length(fits) + 1]] <- data.frame(
        level = level, missing = missing, estimator = estimator, measure = wanted,
        value = number(as.numeric(fm[wanted]))
      )
      pe <- parameterEstimates(fit)
      if (is.null(pe$group)) pe$group <- 1
      pe <- pe[pe$se > 0, ]
      estimates[[length(estimates) + 1]] <- data.frame(
        level = level, missing = missing, estimator = estimator, group = pe$group,
        lhs = pe$lhs, op = pe$op, rhs = pe$rhs, est = number(pe$est), se = number(pe$se)
      )
    }
  }
}
write.csv(do.call(rbind, fits), out("lavaan_fiml_groups_fit.csv"), row.names = FALSE, quote = FALSE)
write.csv(
  do.call(rbind, estimates), out("lavaan_fiml_groups_estimates.csv"),
  row.names = FALSE, quote = FALSE
)
# Score tests: lavaan 0.6-14 computes the ordinary score test with the expected information
# (under MLR it warns and falls back to it), so ML suffices.
score_rows <- function(fit, level, partial) {
  uni <- lavTestScore(fit)$uni
  pt <- parTable(fit)
  later <- match(uni$rhs, pt$plabel)
  data.frame(
    level = level, partial = partial, lhs = pt$lhs[later], op = pt$op[later],
    rhs = pt$rhs[later], group = pt$group[later], X2 = number(uni$X2)
  )
}
scores <- list()
for (level in c("metric", "scalar")) {
  fit <- cfa(model, data = hs, group = "school", group.equal = levels[[level]], missing = "ml")
  scores[[length(scores) + 1]] <- score_rows(fit, level, "")
}
partial <- cfa(model, data = hs, group = "school", group.equal = levels$scalar,
               group.partial = "x3 ~ 1", missing = "ml")
scores[[length(scores) + 1]] <- score_rows(partial, "scalar", "x3~1")
write.csv(do.call(rbind, scores), out("lavaan_fiml_groups_score.csv"), row.names = FALSE,
          quote = FALSE)
fm <- fitMeasures(partial, measures)
write.csv(data.frame(measure = measures, value = number(as.numeric(fm[measures]))),
          out("lavaan_fiml_groups_partial.csv"), row.names = FALSE, quote = FALSE)

cat(sprintf(
  '{\n  "R": "%s",\n  "lavaan": "%s"\n}\n',
  R.version.string, as.character(packageVersion("lavaan"))
), file = out("lavaan_fiml_groups_versions.json"))
