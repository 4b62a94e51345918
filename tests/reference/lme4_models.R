# Reference values for pipeline/models/multilevel.py (the statsmodels engine and the model layer),
# computed with R's lme4.
#
# Fits, with tight optimiser tolerances:
#   - lme4::sleepstudy, Reaction ~ Days + (Days | Subject) (correlated intercept and slope) and
#     Reaction ~ Days + (1 | Subject) + (0 + Days | Subject) (uncorrelated), REML and ML;
#   - a simulated companies/persons/waves design (written as a fixture), REML and ML:
#       wave0_empty:  y ~ 1 + (1 | company), wave "2019-T0" only
#       wave0_full:   y ~ x_within + x_between + grp + (1 | company), wave "2019-T0" only
#       long_nested:  y ~ wave + x_within + x_between + grp + (1 | company/person)
#       long_slope:   y ~ wave + x_within + x_between + grp + (1 + wave | company)
#                       + (1 | company:person)
#     Rows with a missing y or x are dropped first; x_between is the company mean of x over the
#     remaining rows (of that wave for wave0_*, of all waves for long_*), x_within = x - x_between.
#     grp is dummy coded with "a" as reference; wave is 0, 1, 2 in sorted label order.
# Nakagawa & Schielzeth R^2 by hand: var(X beta) (n - 1 denominator) over var(X beta) + random
# variance + residual; a random slope contributes mean_i(z_i' Sigma z_i) (Johnson, 2014).
#
# Rerun from the repository root (needs R and lme4):
#
#     Rscript tests/reference/lme4_models.R
#
# It rewrites, next to this script:
#   lme4_models_sleepstudy.csv  Reaction, Days, Subject (lme4::sleepstudy)
#   lme4_models_sim.csv         company_id, person_id, wave, x, y, grp (simulated, set.seed)
#   lme4_models_fixed.csv       model, reml, term, estimate, std_error
#   lme4_models_fit.csv         model, reml, n_obs, loglik, aic, bic, var_company, var_person,
#                               var_wave_slope, cov_company_wave, var_residual, r2_marginal,
#                               r2_conditional
#   lme4_models_versions.json   R and lme4 versions used

suppressPackageStartupMessages(library(lme4))

args <- commandArgs(trailingOnly = FALSE)
script <- sub("^--file=", "", args[grep("^--file=", args)])
out_dir <- if (length(script) == 1) dirname(normalizePath(script)) else "tests/reference"
out <- function(name) file.path(out_dir, name)
num <- function(x) ifelse(is.na(x), "", sprintf("%.17g", x))

control <- lmerControl(
  optimizer = "bobyqa",
  optCtrl = list(rhoend = 1e-12, maxfun = 1e6),
  check.conv.singular = "ignore"
)

# ---- simulated companies / persons / waves ----------------------------------------------------
simulate <- function() {
  set.seed(20261127)
  n_company <- 24
  labels <- c("2019-T0", "2020-T1", "2021-T2")
  rows <- list()
  person <- 0
  for (c in seq_len(n_company)) {
    u0 <- rnorm(1, 0, 0.5)
    u1 <- rnorm(1, 0.3 * u0 / 0.5 * 0.2, 0.2 * sqrt(1 - 0.3^2))
    cx <- rnorm(1, 3.5, 0.35)
    for (p in seq_len(sample(4:12, 1))) {
      person <- person + 1
      waves <- which(runif(3) < 0.7)
      if (length(waves) == 0) waves <- sample(1:3, 1)
      pe <- rnorm(1, 0, 0.6)
      grp <- sample(c("a", "b", "c"), 1, prob = c(0.5, 0.3, 0.2))
      for (w in waves) {
        x <- cx + rnorm(1, 0, 0.6)
        y <- 3 + 0.15 * (w - 1) + 0.4 * (x - cx) + 0.6 * cx + 0.2 * (grp == "b") -
          0.1 * (grp == "c") + u0 + u1 * (w - 1) + pe + rnorm(1, 0, 0.7)
        rows[[length(rows) + 1]] <- data.frame(
          company_id = sprintf("C%02d", c), person_id = sprintf("P%03d", person),
          wave = labels[w], x = x, y = y, grp = grp
        )
      }
    }
  }
  d <- do.call(rbind, rows)
  d$y[sample(nrow(d), 8)] <- NA
  d$x[sample(nrow(d), 5)] <- NA
  d
}

sim <- simulate()
sim_text <- sim
sim_text$x <- num(sim$x)
sim_text$y <- num(sim$y)
write.csv(sim_text, out("lme4_models_sim.csv"), row.names = FALSE, quote = FALSE)

split_within_between <- function(d) {
  d <- d[complete.cases(d[, c("y", "x", "grp")]), ]
  d$x_between <- ave(d$x, d$company_id)
  d$x_within <- d$x - d$x_between
  d$wave_num <- match(d$wave, sort(unique(d$wave))) - 1
  d$company <- factor(d$company_id)
  d$person <- factor(d$person_id)
  d$grp <- factor(d$grp, levels = c("a", "b", "c"))
  d
}

wave0 <- split_within_between(sim[sim$wave == "2019-T0", ])
long <- split_within_between(sim)

# ---- fitting and extraction -------------------------------------------------------------------
sleep <- lme4::sleepstudy
write.csv(
  data.frame(Reaction = num(sleep$Reaction), Days = sleep$Days, Subject = sleep$Subject),
  out("lme4_models_sleepstudy.csv"), row.names = FALSE, quote = FALSE
)

specs <- list(
  sleep_corr = list(Reaction ~ Days + (Days | Subject), sleep, "Subject", "Days"),
  sleep_indep = list(Reaction ~ Days + (1 | Subject) + (0 + Days | Subject), sleep, "Subject", "Days"),
  wave0_empty = list(y ~ 1 + (1 | company), wave0, "company", NA),
  wave0_full = list(y ~ x_within + x_between + grp + (1 | company), wave0, "company", NA),
  long_nested = list(
    y ~ wave_num + x_within + x_between + grp + (1 | company / person), long, "company", NA
  ),
  long_slope = list(
    y ~ wave_num + x_within + x_between + grp + (1 + wave_num | company) + (1 | company:person),
    long, "company", "wave_num"
  )
)

term_names <- c(
  "(Intercept)" = "Intercept", Days = "Days", wave_num = "wave", x_within = "x_within",
  x_between = "x_between", grpb = "grp[b]", grpc = "grp[c]"
)

# Variance components in the Python names; NA where the model has none.
components <- function(fit, group, slope) {
  vc <- as.data.frame(VarCorr(fit))
  pick <- function(grp, v1, v2 = NA) {
    hit <- vc$grp %in% grp & vc$var1 %in% v1 & (if (is.na(v2)) is.na(vc$var2) else vc$var2 %in% v2)
    if (any(hit)) vc$vcov[hit][1] else NA
  }
  group_re <- grep(paste0("^", group), unique(vc$grp), value = TRUE)
  c(
    var_company = pick(group, "(Intercept)"),
    var_person = pick(c("person:company", "company:person"), "(Intercept)"),
    var_wave_slope = if (is.na(slope)) NA else sum(vc$vcov[vc$grp %in% group_re &
      vc$var1 == slope & is.na(vc$var2)]),
    cov_company_wave = if (is.na(slope)) NA else pick(group, "(Intercept)", slope),
    var_residual = sigma(fit)^2
  )
}

nakagawa <- function(fit, comp, data, slope) {
  var_fixed <- var(as.vector(model.matrix(fit) %*% fixef(fit)))
  random <- sum(comp[c("var_company", "var_person")], na.rm = TRUE)
  if (!is.na(slope)) {
    w <- data[[slope]]
    cov_cw <- if (is.na(comp["cov_company_wave"])) 0 else comp["cov_company_wave"]
    random <- random + mean(2 * cov_cw * w + comp["var_wave_slope"] * w^2)
  }
  total <- var_fixed + random + comp["var_residual"]
  c(r2_marginal = unname(var_fixed / total), r2_conditional = unname((var_fixed + random) / total))
}

fixed_rows <- list()
fit_rows <- list()
for (name in names(specs)) {
  s <- specs[[name]]
  for (reml in c(TRUE, FALSE)) {
    fit <- lmer(s[[1]], data = s[[2]], REML = reml, control = control)
    beta <- fixef(fit)
    fixed_rows[[length(fixed_rows) + 1]] <- data.frame(
      model = name, reml = reml, term = unname(term_names[names(beta)]),
      estimate = num(beta), std_error = num(sqrt(diag(as.matrix(vcov(fit)))))
    )
    comp <- components(fit, s[[3]], s[[4]])
    r2 <- nakagawa(fit, comp, s[[2]], s[[4]])
    fit_rows[[length(fit_rows) + 1]] <- data.frame(
      model = name, reml = reml, n_obs = nobs(fit), loglik = num(as.numeric(logLik(fit))),
      aic = num(AIC(fit)), bic = num(BIC(fit)), t(sapply(c(comp, r2), num))
    )
  }
}
write.csv(do.call(rbind, fixed_rows), out("lme4_models_fixed.csv"), row.names = FALSE, quote = FALSE)
write.csv(do.call(rbind, fit_rows), out("lme4_models_fit.csv"), row.names = FALSE, quote = FALSE)

versions <- sprintf(
  '{\n  "R": "%s",\n  "lme4": "%s",\n  "Matrix": "%s"\n}\n',
  R.version.string, as.character(packageVersion("lme4")), as.character(packageVersion("Matrix"))
)
writeLines(versions, out("lme4_models_versions.json"), sep = "")
