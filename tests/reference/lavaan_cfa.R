# Reference values for pipeline/psychometrics/cfa.py, computed with R's lavaan on lavaan's own data.
#
# Fits the classic three-factor model on lavaan::HolzingerSwineford1939 with lavaan's cfa()
# defaults: ML estimator, likelihood = "normal" (sample covariance divided by N), marker-variable
# identification (first loading of each factor fixed to 1), correlated factors.
#
# Rerun from the repository root (needs R and lavaan, e.g. Debian's r-cran-lavaan):
#
#     Rscript tests/reference/lavaan_cfa.R
#
# It rewrites, next to this script:
#   lavaan_hs1939.csv        x1..x9 exactly as given to lavaan (301 complete rows)
#   lavaan_cfa_fit.csv       measure, value: chisq, df, cfi, tli, rmsea, srmr
#   lavaan_cfa_loadings.csv  factor, item, std_loading (standardizedSolution, op "=~")
#   lavaan_cfa_versions.json R and lavaan versions used

suppressPackageStartupMessages(library(lavaan))

args <- commandArgs(trailingOnly = FALSE)
script <- sub("^--file=", "", args[grep("^--file=", args)])
out_dir <- if (length(script) == 1) dirname(normalizePath(script)) else "tests/reference"
out <- function(name) file.path(out_dir, name)

items <- paste0("x", 1:9)
data <- lavaan::HolzingerSwineford1939[, items]
data_text <- as.data.frame(lapply(data, function(x) ifelse(is.na(x), "", sprintf("%.17g", x))))
write.csv(data_text, out("lavaan_hs1939.csv"), row.names = FALSE, quote = FALSE)

model <- "
  visual  =~ x1 + x2 + x3
  textual =~ x4 + x5 + x6
  speed   =~ x7 + x8 + x9
"
fit <- cfa(model, data = data)
stopifnot(lavInspect(fit, "converged"))

measures <- c("chisq", "df", "cfi", "tli", "rmsea", "srmr")
fm <- fitMeasures(fit, measures)
fit_table <- data.frame(measure = measures, value = sprintf("%.17g", as.numeric(fm[measures])))
write.csv(fit_table, out("lavaan_cfa_fit.csv"), row.names = FALSE, quote = FALSE)

std <- standardizedSolution(fit)
std <- std[std$op == "=~", ]
loadings <- data.frame(factor = std$lhs, item = std$rhs, std_loading = sprintf("%.17g", std$est.std))
write.csv(loadings, out("lavaan_cfa_loadings.csv"), row.names = FALSE, quote = FALSE)

versions <- sprintf(
  '{\n  "R": "%s",\n  "lavaan": "%s",\n  "n": %d\n}\n',
  R.version.string, as.character(packageVersion("lavaan")), lavInspect(fit, "nobs")
)
cat(versions, file = out("lavaan_cfa_versions.json"))
