"""The small data set the statistics tests share with R (n = 60), pasted from R.

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
