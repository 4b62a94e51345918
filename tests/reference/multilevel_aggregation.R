# Reference values for pipeline/psychometrics/aggregation.py, computed with R's multilevel package on its own data.
#
# Fixtures committed here were generated with R 4.2.2 Patched and multilevel 2.7 (Debian's
# r-cran-multilevel); the script writes the versions it ran with to aggregation_versions.json.
#
# Rerun from the repository root (needs R and multilevel, e.g. `apt-get install r-cran-multilevel`):
#
#     Rscript tests/reference/multilevel_aggregation.R
#
# It rewrites, next to this script:
#   aggregation_bh1996.csv     multilevel's bh1996 (Bliese & Halverdson, 99 army companies):
#                              GRP, COHES, LEAD, HRS, WBEING, plus LEAD_NA (LEAD with every 7th
#                              value set missing, to exercise missing scores)
#   aggregation_lq2002.csv     multilevel's lq2002 (49 companies): COMPID and the items of LEAD
#                              (11 items), TSIG (3) and HOSTIL (5); the *_NA copy of LEAD01..LEAD03
#                              has values set missing (rwg.j deletes such rows listwise)
#   aggregation_tiny.csv       a hand-checkable example: 3 companies, one score and two items
#   aggregation_icc.csv        per dataset and variable: n, groups, gsize (the k ICC1 uses),
#                              ICC1, ICC2 (multilevel::ICC1/ICC2 on aov(y ~ as.factor(group)))
#   aggregation_rwg.csv        per dataset, scale and group: rwg.j and gsize
#                              (multilevel::rwg.j with ranvar = (A^2 - 1) / 12)
#   aggregation_company.csv    per dataset, variable and group: n, mean, sd and the 95% CI of the
#                              mean from t.test (t distribution, n - 1 df); the tiny example's
#                              company C is constant (sd 0, interval = the mean)
#   aggregation_versions.json  R and multilevel versions used
#
# Numbers are written with 17 significant digits (sprintf %.17g): a double survives the round trip.

suppressPackageStartupMessages(library(multilevel))

out_dir <- "tests/reference"
if (!dir.exists(out_dir)) stop("run from the repository root: Rscript tests/reference/multilevel_aggregation.R")

fmt <- function(x) ifelse(is.na(x), "", sprintf("%.17g", x))
write_fixture <- function(x, name) {
  write.csv(x, file.path(out_dir, paste0("aggregation_", name, ".csv")), row.names = FALSE,
            na = "", quote = FALSE)
}

data(bh1996, package = "multilevel")
data(lq2002, package = "multilevel")

bh <- bh1996[, c("GRP", "COHES", "LEAD", "HRS", "WBEING")]
bh$LEAD_NA <- bh$LEAD
bh$LEAD_NA[seq(7, nrow(bh), by = 7)] <- NA

lead_items <- sprintf("LEAD%02d", 1:11)
tsig_items <- sprintf("TSIG%02d", 1:3)
hostil_items <- sprintf("HOSTIL%02d", 1:5)
lq <- lq2002[, c("COMPID", lead_items, tsig_items, hostil_items)]
for (item in lead_items[1:3]) {
  lq[[paste0(item, "_NA")]] <- lq[[item]]
}
lq$LEAD01_NA[seq(5, nrow(lq), by = 11)] <- NA
lq$LEAD02_NA[seq(3, nrow(lq), by = 17)] <- NA
lq$LEAD03_NA[lq$COMPID == 2] <- NA # company 2 loses every row: it disappears from rwg.j
lq$LEAD03_NA[lq$COMPID == 3][-1] <- NA # company 3 keeps one complete row: rwg.j is NA

# Tiny example, checkable by hand: company A scores 1, 2, 3; B 4, 5; C 2, 2, 2, 2 (n = 9, 3 groups).
# Grand mean 23 / 9; group means 2, 4.5, 2. SSW = 2 + 0.5 + 0 = 2.5 on 6 df, MSW = 5 / 12.
# SSB = 3 (2 - 23/9)^2 + 2 (4.5 - 23/9)^2 + 4 (2 - 23/9)^2 = 175 / 18 on 2 df, MSB = 175 / 36.
# k = 9 / 3 = 3. ICC1 = (175/36 - 15/36) / (175/36 + 2 * 15/36) = 32 / 41; ICC2 = 160/175 = 32 / 35.
# Items (A = 5 options, ranvar = 2): A has I1 = 1, 2, 3 and I2 = 3, 3, 3 (variances 1 and 0,
# mean 0.5, J = 2): rwg.j = 2 (1 - 1/4) / (2 (1 - 1/4) + 1/4) = 6 / 7. B: I1 = 4, 5, I2 = 1, 5:
# variances 0.5 and 8, mean 4.25 > 2, so truncated to 2: rwg.j = 0. C: all 2: rwg.j = 1.
tiny <- data.frame(
  company = c("A", "A", "A", "B", "B", "C", "C", "C", "C"),
  score = c(1, 2, 3, 4, 5, 2, 2, 2, 2),
  I1 = c(1, 2, 3, 4, 5, 2, 2, 2, 2),
  I2 = c(3, 3, 3, 1, 5, 2, 2, 2, 2)
)

write_fixture(bh, "bh1996")
write_fixture(lq, "lq2002")
write_fixture(tiny, "tiny")

icc_row <- function(dataset, variable, y, group) {
  model <- aov(y ~ as.factor(group))
  tab <- summary(model)[[1]]
  data.frame(
    dataset = dataset, variable = variable,
    n = sum(!is.na(y)), groups = length(unique(group[!is.na(y)])),
    gsize = fmt((tab[2, 1] + (tab[1, 1] + 1)) / (tab[1, 1] + 1)),
    icc1 = fmt(ICC1(model)), icc2 = fmt(ICC2(model))
  )
}
icc <- rbind(
  do.call(rbind, lapply(c("COHES", "LEAD", "HRS", "WBEING", "LEAD_NA"), function(v) {
    icc_row("bh1996", v, bh[[v]], bh$GRP)
  })),
  icc_row("tiny", "score", tiny$score, tiny$company)
)
write_fixture(icc, "icc")

rwg_rows <- function(dataset, scale, items, group, options) {
  ranvar <- (options^2 - 1) / 12
  out <- rwg.j(items, group, ranvar = ranvar)
  data.frame(dataset = dataset, scale = scale, options = options, group = out$grpid,
             rwg_j = fmt(out$rwg.j), gsize = out$gsize)
}
rwg <- rbind(
  rwg_rows("lq2002", "LEAD", lq[, lead_items], lq$COMPID, 5),
  rwg_rows("lq2002", "TSIG", lq[, tsig_items], lq$COMPID, 5),
  rwg_rows("lq2002", "HOSTIL", lq[, hostil_items], lq$COMPID, 5),
  # a wider null (7 options) gives a larger ranvar: fewer groups are truncated to 0
  rwg_rows("lq2002", "HOSTIL_A7", lq[, hostil_items], lq$COMPID, 7),
  rwg_rows("lq2002", "LEAD_NA", lq[, paste0(lead_items[1:3], "_NA")], lq$COMPID, 5),
  rwg_rows("tiny", "tiny", tiny[, c("I1", "I2")], tiny$company, 5)
)
write_fixture(rwg, "rwg")

company_rows <- function(dataset, variable, y, group) {
  do.call(rbind, lapply(split(y, group), function(x) {
    x <- x[!is.na(x)]
    # t.test refuses constant data; its interval is then the point mean +- 0.
    ci <- if (length(x) < 2) c(NA, NA) else if (sd(x) > 0) t.test(x)$conf.int else rep(mean(x), 2)
    data.frame(dataset = dataset, variable = variable, n = length(x), mean = fmt(mean(x)),
               sd = fmt(sd(x)), ci_low = fmt(ci[1]), ci_high = fmt(ci[2]))
  })) -> out
  cbind(group = names(split(y, group)), out)[, c("dataset", "variable", "group", "n", "mean",
                                                 "sd", "ci_low", "ci_high")]
}
company <- rbind(
  company_rows("bh1996", "LEAD", bh$LEAD, bh$GRP),
  company_rows("bh1996", "LEAD_NA", bh$LEAD_NA, bh$GRP),
  company_rows("tiny", "score", tiny$score, tiny$company)
)
write_fixture(company, "company")

writeLines(c(
  "{",
  sprintf('  "r": "%s",', R.version.string),
  sprintf('  "multilevel": "%s",', as.character(packageVersion("multilevel"))),
  '  "script": "tests/reference/multilevel_aggregation.R"',
  "}"
), file.path(out_dir, "aggregation_versions.json"))
