"""The small data sets the statistics tests share with R (n = 60 each), pasted from R.

Generated in R 4.x::

    set.seed(20240601); n <- 60
    x1 <- rbinom(n, 1, 0.5); x2 <- rbinom(n, 1, 0.4); x3 <- round(rnorm(n, 5, 2), 1)
    lp <- -1 + 1.2 * x1 + 0.8 * x2 + 0.2 * (x3 - 5)
    y <- rbinom(n, 1, plogis(lp))
    cat(y); cat(x1); cat(x2); cat(x3)

Each test's docstring holds the R code that computed its reference values from these.
"""

Y = "0 1 1 0 0 1 0 0 1 1 1 0 1 0 0 0 1 1 0 1 1 1 0 1 0 1 1 0 1 1 0 0 1 0 0 1 0 0 1 0 1 0 0 0 0 1 1 0 1 1 0 1 0 0 1 1 1 1 0 0"
X1 = "1 1 1 1 0 1 0 1 0 1 0 0 1 1 1 0 1 1 0 0 1 0 1 1 1 0 1 0 1 0 1 0 1 0 1 0 1 0 1 0 0 0 1 1 1 1 1 0 0 1 0 1 0 0 1 1 1 1 0 1"
X2 = "0 0 0 0 0 0 0 0 0 1 1 1 0 0 1 1 0 0 1 0 0 0 1 1 0 1 0 0 0 1 0 1 0 1 0 0 1 0 1 1 0 0 1 1 0 0 1 1 1 1 0 1 0 1 1 1 1 1 0 1"
X3 = "1.9 4.7 4.8 5.9 5.7 6.5 6.3 4.1 6 8.5 6.6 6.1 6.8 2 0.6 6.3 7.8 8.5 3.1 4.2 6.7 7 4.3 6.2 4.8 5.6 9 8.5 3 5.6 7.5 6.6 5.8 4.3 4.9 7.6 5 3.7 6 3.5 4.1 3.7 3.7 2 4.2 1 2.9 4 8 8.2 6.4 3.4 1.5 1.3 8.3 9.3 5.8 2.3 9.7 5.7"

# Survival data shared by tests/stats/test_cox.py, test_survival.py and
# test_survival_pipeline.py (n = 60): whole months, so many tied times; four patients censored
# at another patient's event time; tumour size missing for patients 5 and 17 (1-based).
# Generated in R 4.2.2::
#
#     set.seed(16); n <- 60
#     g <- rbinom(n, 1, 0.5); afp <- rbinom(n, 1, 0.45); size <- round(rgamma(n, 4, 1), 1)
#     ed <- rbinom(n, 1, 0.5)
#     t <- round(rexp(n, 0.03 * exp(0.7 * g + 0.4 * afp))); t[t == 0] <- 1
#     cens <- round(runif(n, 10, 70)); time <- pmin(t, cens); status <- as.integer(t <= cens)
#     ev <- which(status == 1); ce <- which(status == 0); time[ce[1:4]] <- time[ev[1:4]]
#     size[c(5, 17)] <- NA
#     d <- data.frame(time, status, g, afp, size, ed)
SURV_TIME = ("26 25 6 4 5 26 25 8 12 6 4 29 9 13 5 21 25 2 19 19 33 4 23 30 34 21 1 18 1 48 1 7 21 3 "
             "6 61 20 2 14 4 25 19 4 13 11 4 23 14 15 12 5 11 4 55 27 5 5 22 28 5")
SURV_STATUS = ("1 1 1 1 1 0 0 1 1 0 0 1 1 1 1 0 1 1 1 0 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 0 1 1 1 1 1 0 1 1 "
               "1 1 1 1 0 1 1 0 1 0 1 1 1 0 1 1")
SURV_G = ("1 0 0 0 1 0 0 1 1 0 0 1 0 1 1 0 1 1 1 0 1 1 1 0 0 1 1 1 1 0 0 1 1 1 1 0 0 1 1 0 0 0 0 0 0 1 1 "
          "0 0 1 1 1 1 0 1 1 1 1 1 1")
SURV_AFP = ("0 1 1 1 0 0 0 0 0 0 1 0 1 0 1 0 1 0 0 0 0 1 1 1 1 1 0 0 0 0 1 1 0 1 1 0 1 0 0 1 1 0 1 0 1 1 "
            "1 0 0 1 1 1 1 0 0 0 1 1 0 1")
SURV_SIZE = ("1.6 4.3 1.4 1.6 NA 2.3 1.5 1.5 2.9 3.5 5.1 3.6 8.3 3.1 5.8 6.2 NA 1.8 5.2 3.3 2.2 2.4 4.7 "
             "3.9 5.8 5.1 1.9 4.8 2.3 6.1 10.1 4.5 3.7 2.2 3.5 4.5 4.4 3.4 3.4 3.8 9 2.5 9.1 5.5 2.4 3.2 "
             "2.9 1.5 4.9 6.7 5.7 4.8 3.5 6.7 9.7 1.5 2.5 3.1 1.8 1")
SURV_ED = ("1 1 0 1 1 0 0 1 1 0 0 1 1 1 0 0 1 0 0 1 1 0 1 0 0 0 1 0 0 0 0 1 1 0 1 1 0 0 0 0 1 1 1 1 0 1 "
           "1 0 1 1 1 1 0 1 1 1 0 1 1 1")


def survival_frame():
    """The survival data above as a DataFrame (``size`` NaN where R has NA)."""
    import numpy as np
    import pandas as pd

    cols = {"time": SURV_TIME, "status": SURV_STATUS, "g": SURV_G, "afp": SURV_AFP,
            "size": SURV_SIZE, "ed": SURV_ED}
    return pd.DataFrame({k: np.array([np.nan if v == "NA" else float(v) for v in s.split()])
                         for k, s in cols.items()})
