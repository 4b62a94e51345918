# Reference values for pipeline/models/nested_lmm.py, computed with lme4.
#
# Fixtures committed here were generated with R 4.2.2 Patched and lme4 1.1-31; the script writes
# the versions it ran with to lme4_nested_versions.json.
#
# Rerun from the repository root (needs R and lme4, e.g. `apt-get install r-cran-lme4`):
#
#     Rscript tests/reference/lme4_nested.R
#
# It rewrites, next to this script:
#   lme4_nested_sleepstudy.csv      lme4's sleepstudy: Reaction, Days, Subject (two-level data)
#   lme4_nested_data.csv            a simulated unbalanced three-level panel: 30 companies of 3-15
#                                   persons, each answering 1-3 waves; x is a person-level and z a
#                                   company-level predictor, wave a numeric covariate. Person labels
#                                   restart in every company (p1, p2, ...): the nesting key is the
#                                   (company, person) pair, as in (1 | company/person).
#   lme4_nested_boundary_data.csv   the same design with 6 companies and no company effect, at a
#                                   seed where lme4 puts the company variance at the boundary (0)
#   lme4_nested_person0_data.csv    the first design's 30 companies without a person effect, at
#                                   the first seed where lme4 puts the person variance at 0;
#                                   there statsmodels' lbfgs stops at a person variance of ~0.005,
#                                   short of the optimum, and calls it converged (issue #19)
#   lme4_nested_fixef.csv           per fit and term: estimate and se (from vcov)
#   lme4_nested_varcomp.csv         per fit and component (company, person, residual): variance
#   lme4_nested_fit.csv             per fit: reml, logLik (of a REML fit: the REML criterion / -2),
#                                   nobs, groups, whether lme4 calls the fit singular
#   lme4_nested_versions.json       R and lme4 versions used, and the two seeds searched for
#
# Fits: sleepstudy_{reml,ml} `Reaction ~ Days + (1 | Subject)`; nested_{reml,ml},
# boundary_{reml,ml} and person0_{reml,ml} `y ~ wave + x + z + (1 | company/person)`. bobyqa runs
# with rhoend = 1e-12, so the fits are converged far beyond the tolerances the tests use.
# Numbers are written with 17 significant digits (sprintf %.17g): a double survives the round trip.

suppressPackageStartupMessages(library(lme4))

out_dir <- "tests/reference"
if (!dir.exists(out_dir)) stop("run from the repository root: Rscript tests/reference/lme4_nested.R")

fmt <- function(x) sprintf("%.17g", x)
fixture <- function(name) file.path(out_dir, paste0("lme4_nested_", name, ".csv"))
write_fixture <- function(x, name) {
  write.csv(x, fixture(name), row.names = FALSE, quote = FALSE)
}
control <- lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-12, maxfun = 1e5))

# A panel of `n_company` companies with 3-15 persons each, persons answering 1-3 waves.
simulate_panel <- function(n_company, sd_company, sd_person = 0.8) {
  size <- sample(3:15, n_company, replace = TRUE)
  company <- rep(sprintf("c%02d", seq_len(n_company)), size)
  person <- unlist(lapply(size, function(k) sprintf("p%d", seq_len(k))))
  z <- rep(round(rnorm(n_company), 3), size)
  u_company <- rep(rnorm(n_company, sd = sd_company), size)
  n_person <- length(person)
  waves <- sample(1:3, n_person, replace = TRUE, prob = c(0.3, 0.3, 0.4))
  x <- round(rnorm(n_person), 3)
  u_person <- rnorm(n_person, sd = sd_person)
  row <- rep(seq_len(n_person), waves)
  wave <- unlist(lapply(waves, seq_len))
  y <- 3 + 0.2 * wave + 0.5 * x[row] - 0.3 * z[row] + u_company[row] + u_person[row] +
    rnorm(length(row))
  data.frame(company = company[row], person = person[row], wave = wave, x = x[row], z = z[row],
             y = round(y, 4))
}

fits <- list()

data(sleepstudy, package = "lme4")
write_fixture(data.frame(Reaction = fmt(sleepstudy$Reaction), Days = sleepstudy$Days,
                         Subject = sleepstudy$Subject), "sleepstudy")
for (reml in c(TRUE, FALSE)) {
  name <- paste0("sleepstudy_", if (reml) "reml" else "ml")
  fits[[name]] <- lmer(Reaction ~ Days + (1 | Subject), sleepstudy, REML = reml, control = control)
}

set.seed(20261127)
nested <- simulate_panel(30, sd_company = 0.5)
write_fixture(nested, "data")
for (reml in c(TRUE, FALSE)) {
  name <- paste0("nested_", if (reml) "reml" else "ml")
  fits[[name]] <- lmer(y ~ wave + x + z + (1 | company/person), nested, REML = reml,
                       control = control)
}

# The first seed from 1 at which both the REML and the ML `group` variance are exactly 0.
variance <- function(fit, group) {
  vc <- as.data.frame(VarCorr(fit))
  vc$vcov[vc$grp == group]
}
boundary_seed <- function(simulate, group) {
  for (seed in 1:200) {
    set.seed(seed)
    data <- simulate()
    reml_fit <- lmer(y ~ wave + x + z + (1 | company/person), data, REML = TRUE,
                     control = control)
    ml_fit <- lmer(y ~ wave + x + z + (1 | company/person), data, REML = FALSE,
                   control = control)
    if (variance(reml_fit, group) == 0 && variance(ml_fit, group) == 0) {
      return(list(seed = seed, data = data, reml = reml_fit, ml = ml_fit))
    }
  }
  stop("no seed gave a boundary fit for ", group)
}

boundary <- boundary_seed(function() simulate_panel(6, sd_company = 0), "company")
write_fixture(boundary$data, "boundary_data")
fits[["boundary_reml"]] <- boundary$reml
fits[["boundary_ml"]] <- boundary$ml

person0 <- boundary_seed(function() simulate_panel(30, sd_company = 0.5, sd_person = 0),
                         "person:company")
write_fixture(person0$data, "person0_data")
fits[["person0_reml"]] <- person0$reml
fits[["person0_ml"]] <- person0$ml

fixef_rows <- list()
varcomp_rows <- list()
fit_rows <- list()
for (name in names(fits)) {
  fit <- fits[[name]]
  beta <- fixef(fit)
  fixef_rows[[name]] <- data.frame(fit = name, term = names(beta), estimate = fmt(beta),
                                   se = fmt(sqrt(diag(as.matrix(vcov(fit))))))
  vc <- as.data.frame(VarCorr(fit))
  component <- ifelse(vc$grp == "person:company", "person",
                      ifelse(vc$grp == "Residual", "residual",
                             ifelse(vc$grp == "Subject", "company", vc$grp)))
  varcomp_rows[[name]] <- data.frame(fit = name, component = component, variance = fmt(vc$vcov))
  groups <- ngrps(fit)
  fit_rows[[name]] <- data.frame(
    fit = name, reml = isREML(fit), loglik = fmt(as.numeric(logLik(fit))), nobs = nobs(fit),
    n_company = unname(groups[names(groups) %in% c("company", "Subject")]),
    n_person = if ("person:company" %in% names(groups)) groups[["person:company"]] else NA,
    singular = isSingular(fit)
  )
}
write_fixture(do.call(rbind, fixef_rows), "fixef")
write_fixture(do.call(rbind, varcomp_rows), "varcomp")
write.csv(do.call(rbind, fit_rows), fixture("fit"), row.names = FALSE, quote = FALSE, na = "")

writeLines(c(
  "{",
  sprintf('  "r": "%s",', R.version.string),
  sprintf('  "lme4": "%s",', as.character(packageVersion("lme4"))),
  sprintf('  "boundary_seed": %d,', boundary$seed),
  sprintf('  "person0_seed": %d,', person0$seed),
  '  "script": "tests/reference/lme4_nested.R"',
  "}"
), file.path(out_dir, "lme4_nested_versions.json"))
