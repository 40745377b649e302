# MIC, MICe and TICe references from R's minerva (Debian: r-cran-minerva), whose C core is minepy's libmine.
# Called by make_goldens.py:  Rscript minerva_goldens.R IN_DIR OUT_CSV PERMUTATIONS
# IN_DIR holds one NAME.csv per data set (columns x,y) and pvalue_sets.txt (names that also get permutation
# p-values). Writes rows: dataset,measure,value,pvalue,permutations (pvalue NA when not computed).
suppressPackageStartupMessages(library(minerva))
args <- commandArgs(trailingOnly = TRUE)
in_dir <- args[1]; out_csv <- args[2]; B <- as.integer(args[3])
pset <- readLines(file.path(in_dir, "pvalue_sets.txt"))
stats_of <- function(x, y) {
  a <- mine(x, y, alpha = 0.6, C = 15, est = "mic_approx")
  e <- mine(x, y, alpha = 0.6, C = 15, est = "mic_e")
  c(mic = a$MIC, mice = e$MIC, tice = e$TIC)
}
rows <- c("dataset,measure,value,pvalue,permutations")
set.seed(13)
for (f in sort(list.files(in_dir, pattern = "\\.csv$"))) {
  name <- sub("\\.csv$", "", f)
  d <- read.csv(file.path(in_dir, f), colClasses = "numeric")
  obs <- stats_of(d$x, d$y)
  p <- c(mic = NA, mice = NA, tice = NA); nperm <- 0
  if (name %in% pset) {
    count <- c(mic = 0, mice = 0, tice = 0)
    for (b in seq_len(B)) {
      s <- stats_of(d$x, sample(d$y))
      count <- count + (s >= obs - 1e-12 * abs(obs))
    }
    p <- (count + 1) / (B + 1); nperm <- B
  }
  for (m in names(obs)) {
    rows <- c(rows, sprintf("%s,%s,%.17g,%s,%d", name, m, obs[[m]],
                            ifelse(is.na(p[[m]]), "NA", sprintf("%.17g", p[[m]])), nperm))
  }
}
writeLines(rows, out_csv)
