# Reference values for pipeline/models/communities.py, computed with lme4.
#
# Fixtures committed here were generated with R 4.2.2 Patched and lme4 1.1-31; the script writes
# the versions it ran with to lme4_communities_versions.json.
#
# Rerun from the repository root (needs R and lme4, e.g. `apt-get install r-cran-lme4`):
#
#     Rscript tests/reference/lme4_communities.R
#
# It rewrites, next to this script:
#   lme4_communities_data.csv      a simulated panel of 30 companies of 3-15 persons over three
#                                  waves (w1, w2, w3), each person answering one to three of them;
#                                  12 companies are members of a learning community. Columns:
#                                  company_id, person_id, wave, y, community, community_growth
#                                  (community times the wave's position 0, 1, 2)
#   lme4_communities_fixef.csv     per term: estimate and se (from vcov), named as the pipeline
#                                  names them (wave[w2], community_growth)
#   lme4_communities_varcomp.csv   per component (company, person, residual): variance
#   lme4_communities_fit.csv       logLik (REML criterion / -2), nobs, groups
#   lme4_communities_versions.json R and lme4 versions used
#
# Model (REML, as the pipeline fits it):
#   y ~ wave + community + community_growth + (1 | company_id) + (1 | company_id:person_id)
# bobyqa runs with rhoend = 1e-12, so the fit is converged far beyond the tests' tolerances.
# Numbers are written with 17 significant digits (sprintf %.17g).

suppressPackageStartupMessages(library(lme4))

out_dir <- "tests/reference"
if (!dir.exists(out_dir)) stop("run from the repository root: Rscript tests/reference/lme4_communities.R")

fmt <- function(x) sprintf("%.17g", x)
fixture <- function(name) file.path(out_dir, paste0("lme4_communities_", name, ".csv"))
write_fixture <- function(x, name) write.csv(x, fixture(name), row.names = FALSE, quote = FALSE)
control <- lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-12, maxfun = 1e5))

set.seed(20261204)
n_company <- 30
size <- sample(3:15, n_company, replace = TRUE)
member <- c(rep(1, 12), rep(0, n_company - 12))
company <- rep(sprintf("c%02d", seq_len(n_company)), size)
person <- unlist(lapply(size, function(k) sprintf("p%d", seq_len(k))))
n_person <- length(person)
member_of <- rep(member, size)
u_company <- rep(rnorm(n_company, sd = 0.4), size)
u_person <- rnorm(n_person, sd = 0.6)
rows <- do.call(rbind, lapply(seq_len(n_person), function(i) {
  waves <- sort(sample(1:3, sample(1:3, 1, prob = c(0.3, 0.3, 0.4))))
  data.frame(row = i, wave = waves)
}))
i <- rows$row
w <- rows$wave
community <- member_of[i]
growth <- community * (w - 1)
y <- 3 + c(0, 0.1, 0.2)[w] + 0.2 * community + 0.15 * growth + u_company[i] + u_person[i] +
  rnorm(length(i), sd = 0.8)
data <- data.frame(company_id = company[i], person_id = person[i], wave = paste0("w", w),
                   y = round(y, 4), community = community, community_growth = growth)
write_fixture(data, "data")

data$wave <- factor(data$wave)
m <- lmer(y ~ wave + community + community_growth + (1 | company_id) + (1 | company_id:person_id),
          data, REML = TRUE, control = control)

term_name <- function(term) {
  term <- sub("^\\(Intercept\\)$", "Intercept", term)
  sub("^wave(w[0-9])$", "wave[\\1]", term)
}
write_fixture(data.frame(term = term_name(names(fixef(m))), estimate = fmt(fixef(m)),
                         se = fmt(sqrt(diag(as.matrix(vcov(m)))))), "fixef")
vc <- as.data.frame(VarCorr(m))
component <- c("company_id:person_id" = "person", company_id = "company", Residual = "residual")
write_fixture(data.frame(component = component[vc$grp], variance = fmt(vc$vcov)), "varcomp")
write_fixture(data.frame(loglik = fmt(as.numeric(logLik(m))), nobs = nobs(m),
                         companies = ngrps(m)[["company_id"]],
                         persons = ngrps(m)[["company_id:person_id"]]), "fit")
writeLines(sprintf('{"R": "%s", "lme4": "%s"}', R.version.string, packageVersion("lme4")),
           file.path(out_dir, "lme4_communities_versions.json"))
