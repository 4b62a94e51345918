# Reference values for the validity evidence of pipeline/psychometrics/validity.py, computed with
# R's lavaan, semTools and cor.test on three data sets:
#
#   hs     lavaan::HolzingerSwineford1939, x1..x9, with missing values added by a seeded rule:
#          every cell missing completely at random with probability .08, and x1 and x2 missing
#          with probability .25 more when x7 is above its median (missing at random); scales
#          visual x1-x3, textual x4-x6, speed x7-x9; culture visual, textual; outcome speed.
#   bfi    psych::bfi's 25 items (2,800 rows, their real missing answers), the reverse-keyed items
#          of ?psych::bfi (A1, C4, C5, E1, E2, O2, O5) recoded as 7 - x; scales A, C, E, N, O of
#          five items; culture A, C, E; outcome N, O.
#   hs_single  the hs items with the scales visual x1-x3, textual x4-x6, speed x7-x8 and a scale
#          of one item, single x9: HTMT only, for what semTools does with a one-item scale (NaN).
#   tiny   five hand-made score columns a..e: pairs with 0, 1, 3, 4 and 5 complete rows and a
#          constant column, for cor.test's edge cases (fewer than 3 pairs: an error, recorded as
#          NA; 3 pairs: no confidence interval; no variance: NA).
#
# What is computed:
#   scale scores   the mean of a scale's answered items when at least 66% of its items are
#                  answered (the pipeline's min_valid rule), else NA;
#   the CFA        cfa(model, missing = "ml") (full-information ML, so every row counts), the
#                  factors correlated; standardizedSolution()'s est.std of the loadings (=~) and
#                  of the factor correlations (~~ between two factors);
#   CR, AVE        from those standardised loadings l of a factor, by the formulas
#                  CR = (sum l)^2 / ((sum l)^2 + sum(1 - l^2)), AVE = mean(l^2); the Python test
#                  feeds the same loadings to the module, so this checks the arithmetic;
#   Fornell-Larcker  sqrt(AVE) against the factor's largest absolute correlation with another
#                  factor; ok when sqrt(AVE) is larger;
#   HTMT           semTools::htmt(model, data, missing, htmt2) for missing "listwise" (semTools's
#                  default) and "pairwise", and htmt2 TRUE (semTools's default: geometric means,
#                  Roemer, Schuberth & Henseler 2021) and FALSE (arithmetic means, Henseler,
#                  Ringle & Sarstedt 2015), always with absolute = TRUE (its default); the whole
#                  matrix, diagonal included;
#   r              cor.test(x, y) (Pearson, 95% CI by Fisher's z) on every pair of scale scores,
#                  over the rows where both are present.
#
# Rerun from the repository root (needs R with lavaan, psych and semTools, e.g. Debian's
# r-cran-lavaan, r-cran-psych and r-cran-semtools):
#
#     Rscript tests/reference/validity.R
#
# It rewrites, next to this script (numbers with 17 significant digits, empty cell = NA):
#   validity_<data>.csv         hs, bfi: the items exactly as given to lavaan and semTools
#   validity_<data>_scores.csv  hs, bfi, tiny: the scale scores given to cor.test
#   validity_loadings.csv       data, factor, item, std_loading
#   validity_factor_cor.csv     data, factor_a, factor_b, r (both orders)
#   validity_scales.csv         data, scale, n_items, cr, ave, sqrt_ave, max_r, max_r_with,
#                               fornell_larcker_ok
#   validity_htmt.csv           data, missing, mean, scale_a, scale_b, htmt
#   validity_cor.csv            data, scale_a, scale_b, n, r, r_lo, r_hi, p
#   validity_versions.json      R, lavaan, psych and semTools versions, htmt's defaults

suppressPackageStartupMessages({
  library(lavaan)
  library(psych)
  library(semTools)
})

args <- commandArgs(trailingOnly = FALSE)
script <- sub("^--file=", "", args[grep("^--file=", args)])
out_dir <- if (length(script) == 1) dirname(normalizePath(script)) else "tests/reference"
out <- function(name) file.path(out_dir, name)
number <- function(x) ifelse(is.na(x), "", sprintf("%.17g", x))
write <- function(frame, name) {
  write.csv(frame, out(name), row.names = FALSE, quote = FALSE, na = "")
}

hs <- lavaan::HolzingerSwineford1939[, paste0("x", 1:9)]
set.seed(20261215)
mcar <- matrix(runif(nrow(hs) * ncol(hs)) < 0.08, nrow(hs))
hs[mcar] <- NA
mar <- !is.na(hs$x7) & hs$x7 > median(hs$x7, na.rm = TRUE)
hs$x1[mar & runif(nrow(hs)) < 0.25] <- NA
hs$x2[mar & runif(nrow(hs)) < 0.25] <- NA

bfi <- psych::bfi[, 1:25]
for (item in c("A1", "C4", "C5", "E1", "E2", "O2", "O5")) bfi[[item]] <- 7 - bfi[[item]]

tiny <- data.frame(
  a = c(1, 2, 3, 4, 5, NA),
  b = c(2, 1, 4, NA, NA, NA),
  c = c(1, 3, 2, 5, NA, 4),
  d = c(NA, NA, NA, NA, 2, 3),
  e = c(3, 3, 3, 3, 3, 3)
)

hs_scales <- list(visual = paste0("x", 1:3), textual = paste0("x", 4:6), speed = paste0("x", 7:9))
sets <- list(
  hs = list(data = hs, scales = hs_scales),
  bfi = list(data = bfi, scales = lapply(c(A = "A", C = "C", E = "E", N = "N", O = "O"),
                                         function(s) paste0(s, 1:5)))
)
single_scales <- list(
  visual = paste0("x", 1:3), textual = paste0("x", 4:6), speed = c("x7", "x8"), single = "x9"
)

model_of <- function(scales) {
  paste(vapply(names(scales), function(s) {
    paste(s, "=~", paste(scales[[s]], collapse = " + "))
  }, ""), collapse = "\n")
}

scores_of <- function(data, scales) {
  as.data.frame(lapply(scales, function(items) {
    block <- as.matrix(data[, items, drop = FALSE])
    answered <- rowSums(!is.na(block))
    ifelse(answered / length(items) >= 0.66, rowMeans(block, na.rm = TRUE), NA)
  }))
}

htmt_rows <- function(name, data, scales) {
  rows <- list()
  for (missing in c("listwise", "pairwise")) {
    for (htmt2 in c(TRUE, FALSE)) {
      h <- unclass(htmt(model_of(scales), data = data, missing = missing, htmt2 = htmt2))
      pairs <- expand.grid(a = names(scales), b = names(scales), stringsAsFactors = FALSE)
      rows[[length(rows) + 1]] <- data.frame(
        data = name, missing = missing, mean = if (htmt2) "geometric" else "arithmetic",
        scale_a = pairs$a, scale_b = pairs$b,
        htmt = number(mapply(function(a, b) h[a, b], pairs$a, pairs$b))
      )
    }
  }
  do.call(rbind, rows)
}

cor_rows <- function(name, scores) {
  pairs <- t(combn(names(scores), 2))
  do.call(rbind, lapply(seq_len(nrow(pairs)), function(i) {
    x <- scores[[pairs[i, 1]]]
    y <- scores[[pairs[i, 2]]]
    both <- !is.na(x) & !is.na(y)
    test <- tryCatch(suppressWarnings(cor.test(x, y)), error = function(e) NULL)
    ci <- if (is.null(test$conf.int)) c(NA, NA) else test$conf.int
    data.frame(
      data = name, scale_a = pairs[i, 1], scale_b = pairs[i, 2], n = sum(both),
      r = number(if (is.null(test)) NA else unname(test$estimate)),
      r_lo = number(ci[1]), r_hi = number(ci[2]),
      p = number(if (is.null(test)) NA else test$p.value)
    )
  }))
}

loadings <- list()
factor_cor <- list()
scale_rows <- list()
htmts <- list(htmt_rows("hs_single", hs, single_scales))
cors <- list(cor_rows("tiny", tiny))
write(as.data.frame(lapply(tiny, number)), "validity_tiny_scores.csv")
for (name in names(sets)) {
  set <- sets[[name]]
  write(as.data.frame(lapply(set$data, number)), sprintf("validity_%s.csv", name))
  scores <- scores_of(set$data, set$scales)
  write(as.data.frame(lapply(scores, number)), sprintf("validity_%s_scores.csv", name))

  fit <- cfa(model_of(set$scales), data = set$data, missing = "ml")
  stopifnot(lavInspect(fit, "converged"))
  std <- standardizedSolution(fit)
  lam <- std[std$op == "=~", ]
  loadings[[name]] <- data.frame(
    data = name, factor = lam$lhs, item = lam$rhs, std_loading = number(lam$est.std)
  )
  factors <- names(set$scales)
  phi <- std[std$op == "~~" & std$lhs %in% factors & std$rhs %in% factors & std$lhs != std$rhs, ]
  factor_cor[[name]] <- data.frame(
    data = name, factor_a = c(phi$lhs, phi$rhs), factor_b = c(phi$rhs, phi$lhs),
    r = number(c(phi$est.std, phi$est.std))
  )
  for (f in factors) {
    l <- lam$est.std[lam$lhs == f]
    cr <- sum(l)^2 / (sum(l)^2 + sum(1 - l^2))
    ave <- mean(l^2)
    others <- phi[phi$lhs == f | phi$rhs == f, ]
    largest <- which.max(abs(others$est.std))
    with <- ifelse(others$lhs[largest] == f, others$rhs[largest], others$lhs[largest])
    scale_rows[[length(scale_rows) + 1]] <- data.frame(
      data = name, scale = f, n_items = length(set$scales[[f]]), cr = number(cr),
      ave = number(ave), sqrt_ave = number(sqrt(ave)),
      max_r = number(abs(others$est.std[largest])), max_r_with = with,
      fornell_larcker_ok = ifelse(sqrt(ave) > abs(others$est.std[largest]), "True", "False")
    )
  }
  htmts[[length(htmts) + 1]] <- htmt_rows(name, set$data, set$scales)
  cors[[length(cors) + 1]] <- cor_rows(name, scores)
}
write(do.call(rbind, loadings), "validity_loadings.csv")
write(do.call(rbind, factor_cor), "validity_factor_cor.csv")
write(do.call(rbind, scale_rows), "validity_scales.csv")
write(do.call(rbind, htmts), "validity_htmt.csv")
write(do.call(rbind, cors), "validity_cor.csv")

defaults <- formals(semTools::htmt)
cat(sprintf(
  paste0(
    '{\n  "R": "%s",\n  "lavaan": "%s",\n  "psych": "%s",\n  "semTools": "%s",\n',
    '  "htmt_defaults": {"missing": "%s", "absolute": %s, "htmt2": %s},\n',
    '  "script": "tests/reference/validity.R"\n}\n'
  ),
  R.version.string, as.character(packageVersion("lavaan")), as.character(packageVersion("psych")),
  as.character(packageVersion("semTools")), defaults$missing, tolower(defaults$absolute),
  tolower(defaults$htmt2)
), file = out("validity_versions.json"))
