# Reference values for the longitudinal ("wide") invariance model in pipeline/psychometrics/:
# one factor measured by four items at three waves, fitted in one group with a factor per wave,
# all factors correlated, and the same item's residuals correlated across every pair of waves,
# computed with R's lavaan.
#
# The data are simulated here by a seeded rule, as a panel survey produces them: 450 persons, a
# stable item-specific part in every item's residual (so the residuals correlate over the
# waves), the intercept of y3 shifted by .4 at wave 3 (a non-invariant item for the partial
# search to find); persons absent in a wave (wave 1: 10% join later; wave 2: 25% absent; wave 3:
# 40% absent) have every item of that wave missing, and any other answer is missing with
# probability .05.
#
# Levels: configural; metric (each item's loading equal over the waves, by labels); scalar
# (loadings and intercepts equal, the factor means of waves 2 and 3 free). Each is fitted with
# cfa() under estimator = "ML" and "MLR", with missing = "ml" and with missing = "listwise"
# (persons complete at every wave).
#
# Rerun from the repository root (needs R and lavaan, e.g. Debian's r-cran-lavaan):
#
#     Rscript tests/reference/lavaan_wide.R
#
# It rewrites, next to this script:
#   lavaan_wide_data.csv       y1_1..y4_3 (item _ wave) per person as given to lavaan (empty = missing)
#   lavaan_wide_fit.csv        level, missing, estimator, measure, value (fitMeasures)
#   lavaan_wide_estimates.csv  level, missing, estimator, lhs, op, rhs, est, se
#   lavaan_wide_score.csv      level, partial, lhs, op, rhs, X2: lavTestScore's univariate score
#                              test of each equality constraint (named by the later wave's
#                              parameter; FIML, ML) of the metric and scalar levels, and of the
#                              scalar level with the intercept of y3 at wave 3 free
#   lavaan_wide_partial.csv    measure, value: fitMeasures of that partial scalar model
#   lavaan_wide_versions.json  R and lavaan versions used

suppressPackageStartupMessages(library(lavaan))

args <- commandArgs(trailingOnly = FALSE)
script <- sub("^--file=", "", args[grep("^--file=", args)])
out_dir <- if (length(script) == 1) dirname(normalizePath(script)) else "tests/reference"
out <- function(name) file.path(out_dir, name)
number <- function(x) ifelse(is.na(x), "", sprintf("%.17g", x))

set.seed(20261203)
n <- 450
items <- 1:4
waves <- 1:3
loading <- c(1, 0.8, 0.9, 0.7)
intercept <- c(3, 3.2, 2.9, 3.1)
f1 <- rnorm(n)
f2 <- 0.2 + 0.6 * f1 + rnorm(n, sd = 0.8)
f3 <- 0.3 + 0.5 * f2 + rnorm(n, sd = 0.8)
factors <- cbind(f1, f2, f3)
stable <- matrix(rnorm(n * 4, sd = 0.3), n)  # each person's item-specific part
data <- list()
for (t in waves) {
  for (j in items) {
    shift <- if (j == 3 && t == 3) 0.4 else 0
    data[[sprintf("y%d_%d", j, t)]] <-
      intercept[j] + shift + loading[j] * factors[, t] + stable[, j] + rnorm(n, sd = 0.5)
  }
}
data <- as.data.frame(data)
absent <- cbind(runif(n) < 0.10, runif(n) < 0.25, runif(n) < 0.40)
absent[rowSums(absent) == 3, 1] <- FALSE  # everyone answers in some wave
for (t in waves) {
  data[absent[, t], sprintf("y%d_%d", items, t)] <- NA
}
values <- as.matrix(data)
values[runif(length(values)) < 0.05] <- NA
data[] <- values
data <- data[rowSums(!is.na(data)) > 0, ]

loadings <- function(labelled) {
  sapply(waves, function(t) {
    terms <- sprintf("y%d_%d", items, t)
    if (labelled) terms[-1] <- paste0("l", items[-1], "*", terms[-1])
    sprintf("F%d =~ %s", t, paste(terms, collapse = " + "))
  })
}
residuals <- unlist(lapply(items, function(j) {
  pairs <- combn(waves, 2)
  sprintf("y%d_%d ~~ y%d_%d", j, pairs[1, ], j, pairs[2, ])
}))
intercepts <- function(free = character()) {
  c(
    sapply(waves, function(t) {
      sapply(items, function(j) {
        name <- sprintf("y%d_%d", j, t)
        label <- if (name %in% free) sprintf("i%d_%d", j, t) else sprintf("i%d", j)
        sprintf("%s ~ %s*1", name, label)
      })
    }),
    "F1 ~ 0*1", "F2 ~ 1", "F3 ~ 1"
  )
}
syntax <- list(
  configural = c(loadings(FALSE), residuals),
  metric = c(loadings(TRUE), residuals),
  scalar = c(loadings(TRUE), residuals, intercepts())
)
measures <- c(
  "npar", "ntotal", "logl", "unrestricted.logl", "chisq", "df", "baseline.chisq",
  "baseline.df", "cfi", "tli", "rmsea", "srmr"
)
robust <- c("chisq.scaled", "chisq.scaling.factor", "cfi.robust", "tli.robust", "rmsea.robust")

write.csv(data.frame(lapply(data, number)), out("lavaan_wide_data.csv"), row.names = FALSE,
          quote = FALSE)
fits <- list()
estimates <- list()
for (level in names(syntax)) {
  for (missing in c("ml", "listwise")) {
    for (estimator in c("ML", "MLR")) {
      fit <- cfa(paste(syntax[[level]], collapse = "\n"), data = data, missing = missing,
                 estimator = estimator)
      stopifnot(lavInspect(fit, "converged"))
      wanted <- if (estimator == "MLR") c(measures, robust) else measures
      fm <- fitMeasures(fit, wanted)
      fits[[length(fits) + 1]] <- data.frame(
        level = level, missing = missing, estimator = estimator, measure = wanted,
        value = number(as.numeric(fm[wanted]))
      )
      pe <- parameterEstimates(fit)
      pe <- pe[pe$op != "==" & pe$se > 0, ]
      estimates[[length(estimates) + 1]] <- data.frame(
        level = level, missing = missing, estimator = estimator,
        lhs = pe$lhs, op = pe$op, rhs = pe$rhs, est = number(pe$est), se = number(pe$se)
      )
    }
  }
}
write.csv(do.call(rbind, fits), out("lavaan_wide_fit.csv"), row.names = FALSE, quote = FALSE)
write.csv(do.call(rbind, estimates), out("lavaan_wide_estimates.csv"), row.names = FALSE,
          quote = FALSE)

# Score tests of the labels' equality constraints (expected information, as in
# lavaan_fiml_groups.R), each named by the later wave's parameter.
score_rows <- function(fit, level, partial) {
  uni <- lavTestScore(fit)$uni
  pt <- parTable(fit)
  later <- match(uni$rhs, pt$plabel)
  data.frame(level = level, partial = partial, lhs = pt$lhs[later], op = pt$op[later],
             rhs = pt$rhs[later], X2 = number(uni$X2))
}
scores <- list()
for (level in c("metric", "scalar")) {
  fit <- cfa(paste(syntax[[level]], collapse = "\n"), data = data, missing = "ml")
  scores[[length(scores) + 1]] <- score_rows(fit, level, "")
}
partial_syntax <- c(loadings(TRUE), residuals, intercepts(free = "y3_3"))
partial <- cfa(paste(partial_syntax, collapse = "\n"), data = data, missing = "ml")
scores[[length(scores) + 1]] <- score_rows(partial, "scalar", "y3_3~1")
write.csv(do.call(rbind, scores), out("lavaan_wide_score.csv"), row.names = FALSE, quote = FALSE)
fm <- fitMeasures(partial, measures)
write.csv(data.frame(measure = measures, value = number(as.numeric(fm[measures]))),
          out("lavaan_wide_partial.csv"), row.names = FALSE, quote = FALSE)
writeLines(
  sprintf('{"R": "%s", "lavaan": "%s"}', getRversion(), packageVersion("lavaan")),
  out("lavaan_wide_versions.json")
)
