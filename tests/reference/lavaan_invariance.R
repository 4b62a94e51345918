# Reference values for pipeline/psychometrics/invariance.py, computed with R's lavaan on lavaan's own data.
#
# Fits the classic three-factor model on lavaan::HolzingerSwineford1939 with group = "school"
# at three levels of measurement invariance, with lavaan's cfa() defaults otherwise (ML,
# likelihood = "normal", marker-variable identification, mean structure because of `group`):
#   configural  no equality constraints
#   metric      group.equal = "loadings"
#   scalar      group.equal = c("loadings", "intercepts")
#
# Rerun from the repository root (needs R and lavaan, e.g. Debian's r-cran-lavaan):
#
#     Rscript tests/reference/lavaan_invariance.R
#
# It rewrites, next to this script:
#   lavaan_invariance_data.csv      x1..x9 and school exactly as given to lavaan (301 rows)
#   lavaan_invariance_fit.csv       level, measure, value: chisq, df, cfi, tli, rmsea, srmr
#   lavaan_invariance_versions.json R and lavaan versions used, N per group

suppressPackageStartupMessages(library(lavaan))

args <- commandArgs(trailingOnly = FALSE)
script <- sub("^--file=", "", args[grep("^--file=", args)])
out_dir <- if (length(script) == 1) dirname(normalizePath(script)) else "tests/reference"
out <- function(name) file.path(out_dir, name)

items <- paste0("x", 1:9)
data <- lavaan::HolzingerSwineford1939[, c(items, "school")]
data$school <- as.character(data$school)
data_text <- as.data.frame(lapply(data[, items], function(x) ifelse(is.na(x), "", sprintf("%.17g", x))))
data_text$school <- data$school
write.csv(data_text, out("lavaan_invariance_data.csv"), row.names = FALSE, quote = FALSE)

model <- "
  visual  =~ x1 + x2 + x3
  textual =~ x4 + x5 + x6
  speed   =~ x7 + x8 + x9
"
levels <- list(
  configural = "",
  metric = c("loadings"),
  scalar = c("loadings", "intercepts")
)
measures <- c("chisq", "df", "cfi", "tli", "rmsea", "srmr")
rows <- list()
fits <- list()
for (level in names(levels)) {
  fit <- cfa(model, data = data, group = "school", group.equal = levels[[level]])
  stopifnot(lavInspect(fit, "converged"))
  fits[[level]] <- fit
  fm <- fitMeasures(fit, measures)
  rows[[level]] <- data.frame(
    level = level, measure = measures, value = sprintf("%.17g", as.numeric(fm[measures]))
  )
}
write.csv(do.call(rbind, rows), out("lavaan_invariance_fit.csv"), row.names = FALSE, quote = FALSE)

fit <- fits[["configural"]]
groups <- lavInspect(fit, "group.label")
nobs <- unlist(lavInspect(fit, "nobs"))
versions <- sprintf(
  '{\n  "R": "%s",\n  "lavaan": "%s",\n  "groups": [%s],\n  "n": [%s]\n}\n',
  R.version.string, as.character(packageVersion("lavaan")),
  paste0('"', groups, '"', collapse = ", "), paste(nobs, collapse = ", ")
)
cat(versions, file = out("lavaan_invariance_versions.json"))
