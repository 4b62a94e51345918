# Reference values for pipeline/models/trajectories.py, computed with lme4.
#
# Fixtures committed here were generated with R 4.2.2 Patched and lme4 1.1-31; the script writes
# the versions it ran with to lme4_trajectories_versions.json.
#
# Rerun from the repository root (needs R and lme4, e.g. `apt-get install r-cran-lme4`):
#
#     Rscript tests/reference/lme4_trajectories.R
#
# It rewrites, next to this script:
#   lme4_trajectories_data.csv      a simulated panel of 30 companies of 3-15 persons over three
#                                   waves (w1, w2, w3), each person answering one to three of
#                                   them; 12 companies start a trajectory, 6 before w2 and 6
#                                   before w3, and about 35% of their persons take part. Columns:
#                                   company_id, person_id, wave, y, has_trajectory, after_start,
#                                   participant (0/1)
#   lme4_trajectories_fixef.csv     per model and term: estimate and se (from vcov), terms named
#                                   as the pipeline names them (wave[w2], participant_after_start)
#   lme4_trajectories_varcomp.csv   per model and component (company, person, residual): variance
#   lme4_trajectories_fit.csv       per model: logLik (REML criterion / -2), nobs, groups
#   lme4_trajectories_versions.json R and lme4 versions used
#
# Models (REML, as the pipeline fits them):
#   trajectory    y ~ wave + has_trajectory + after_start + (1 | company_id) +
#                 (1 | company_id:person_id)
#   participants  the same random part, on the companies with a trajectory:
#                 y ~ wave + after_start + participant + participant:after_start
# bobyqa runs with rhoend = 1e-12, so the fits are converged far beyond the tests' tolerances.
# Numbers are written with 17 significant digits (sprintf %.17g).

suppressPackageStartupMessages(library(lme4))

out_dir <- "tests/reference"
if (!dir.exists(out_dir)) stop("run from the repository root: Rscript tests/reference/lme4_trajectories.R")

fmt <- function(x) sprintf("%.17g", x)
fixture <- function(name) file.path(out_dir, paste0("lme4_trajectories_", name, ".csv"))
write_fixture <- function(x, name) write.csv(x, fixture(name), row.names = FALSE, quote = FALSE)
control <- lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-12, maxfun = 1e5))

set.seed(20261203)
n_company <- 30
size <- sample(3:15, n_company, replace = TRUE)
start <- c(rep(2, 6), rep(3, 6), rep(Inf, n_company - 12))  # first wave on or after the start
company <- rep(sprintf("c%02d", seq_len(n_company)), size)
person <- unlist(lapply(size, function(k) sprintf("p%d", seq_len(k))))
n_person <- length(person)
start_of <- rep(start, size)
taking_part <- as.numeric(is.finite(start_of) & runif(n_person) < 0.35)
u_company <- rep(rnorm(n_company, sd = 0.4), size)
u_person <- rnorm(n_person, sd = 0.6)
rows <- do.call(rbind, lapply(seq_len(n_person), function(i) {
  waves <- sort(sample(1:3, sample(1:3, 1, prob = c(0.3, 0.3, 0.4))))
  data.frame(row = i, wave = waves)
}))
i <- rows$row
w <- rows$wave
after <- as.numeric(w >= start_of[i])
has <- as.numeric(is.finite(start_of[i]))
y <- 3 + c(0, 0.15, 0.3)[w] + 0.1 * has + 0.25 * after + 0.05 * taking_part[i] +
  0.3 * taking_part[i] * after + u_company[i] + u_person[i] + rnorm(length(i), sd = 0.8)
data <- data.frame(company_id = company[i], person_id = person[i], wave = paste0("w", w),
                   y = round(y, 4), has_trajectory = has, after_start = after,
                   participant = taking_part[i])
write_fixture(data, "data")

data$wave <- factor(data$wave)
models <- list(
  trajectory = lmer(y ~ wave + has_trajectory + after_start + (1 | company_id) +
                      (1 | company_id:person_id), data, REML = TRUE, control = control),
  participants = lmer(y ~ wave + after_start + participant + participant:after_start +
                        (1 | company_id) + (1 | company_id:person_id),
                      subset(data, has_trajectory == 1), REML = TRUE, control = control)
)

term_name <- function(term) {
  term <- sub("^\\(Intercept\\)$", "Intercept", term)
  term <- sub("^wave(w[0-9])$", "wave[\\1]", term)
  sub("^after_start:participant$|^participant:after_start$", "participant_after_start", term)
}
fixef_rows <- do.call(rbind, lapply(names(models), function(name) {
  m <- models[[name]]
  data.frame(model = name, term = term_name(names(fixef(m))), estimate = fmt(fixef(m)),
             se = fmt(sqrt(diag(as.matrix(vcov(m))))))
}))
write_fixture(fixef_rows, "fixef")
varcomp_rows <- do.call(rbind, lapply(names(models), function(name) {
  vc <- as.data.frame(VarCorr(models[[name]]))
  component <- c("company_id:person_id" = "person", company_id = "company", Residual = "residual")
  data.frame(model = name, component = component[vc$grp], variance = fmt(vc$vcov))
}))
write_fixture(varcomp_rows, "varcomp")
fit_rows <- do.call(rbind, lapply(names(models), function(name) {
  m <- models[[name]]
  data.frame(model = name, loglik = fmt(as.numeric(logLik(m))), nobs = nobs(m),
             companies = ngrps(m)[["company_id"]], persons = ngrps(m)[["company_id:person_id"]])
}))
write_fixture(fit_rows, "fit")
writeLines(sprintf('{"R": "%s", "lme4": "%s"}', R.version.string, packageVersion("lme4")),
           file.path(out_dir, "lme4_trajectories_versions.json"))
