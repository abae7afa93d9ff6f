package dev.freshtoken.keycloak.refresh;

import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

import org.jboss.logging.Logger;

/**
 * The per-node limit of concurrent upstream refreshes. Every refresh holds a pooled database
 * connection and the row lock ({@code SELECT ... FOR UPDATE}) for the whole exchange with the
 * IdP, so during an IdP brown-out many users due at once could take every connection of
 * Keycloak's pool and stop logins. A permit is taken before the connection and the row lock
 * (TokenService); waiting for one is short and bounded, and a caller that gets none is answered
 * {@code retry_later} with {@code Retry-After} without taking the row lock or another connection.
 *
 * Each refresh in flight holds two connections: the one Keycloak's request transaction already
 * holds (it read the user and the link) and the one of the row-locked transaction.
 *
 * SPI options (of our realm resource {@code fresh-token}):
 * {@code --spi-realm-restapi-extension--fresh-token--max-concurrent-refreshes} (default 16) and
 * {@code --spi-realm-restapi-extension--fresh-token--refresh-permit-wait-ms} (default 100, at most 5000).
 */
public final class RefreshLimiter {

    private static final Logger LOG = Logger.getLogger("dev.freshtoken.keycloak");

    public static final String MAX_OPTION = "max-concurrent-refreshes";
    public static final String WAIT_OPTION = "refresh-permit-wait-ms";
    public static final int DEFAULT_MAX = 16;
    public static final long DEFAULT_WAIT_MS = 100;
    static final int MAX_MAX = 10_000;
    static final long MAX_WAIT_MS = 5_000;
    /** Retry-After of the refusal, in seconds. */
    static final long RETRY_AFTER_S = 2;

    private static volatile Semaphore permits = new Semaphore(DEFAULT_MAX);
    private static volatile int max = DEFAULT_MAX;
    private static volatile long waitMs = DEFAULT_WAIT_MS;
    private static final AtomicLong lastRefusalLog = new AtomicLong();

    private RefreshLimiter() {
    }

    /** Applies the SPI options (null or blank: the default). Called once at start-up, before any request. */
    public static synchronized void configure(String maxValue, String waitValue) {
        int n = maxValue == null || maxValue.isBlank() ? DEFAULT_MAX : parse(MAX_OPTION, maxValue, 1, MAX_MAX);
        long w = waitValue == null || waitValue.isBlank() ? DEFAULT_WAIT_MS : parse(WAIT_OPTION, waitValue, 0, MAX_WAIT_MS);
        max = n;
        waitMs = w;
        permits = new Semaphore(n);
        LOG.infof("fresh-token: at most %d concurrent upstream refreshes on this node (%s), permit wait %d ms", n, MAX_OPTION, w);
    }

    private static int parse(String option, String value, long min, long maxAllowed) {
        long n;
        try {
            n = Long.parseLong(value.trim());
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("fresh-token: SPI option " + option + " must be a whole number, not '" + value + "'");
        }
        if (n < min || n > maxAllowed) {
            throw new IllegalArgumentException("fresh-token: SPI option " + option + " must be between " + min + " and " + maxAllowed
                    + ", not " + n);
        }
        return (int) n;
    }

    /** A permit for one upstream refresh, or null when the node's limit is reached (after the bounded wait). */
    static Semaphore tryAcquire() {
        Semaphore s = permits;
        try {
            if (s.tryAcquire(waitMs, TimeUnit.MILLISECONDS)) {
                return s;
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return null;
        }
        long now = System.currentTimeMillis();
        long last = lastRefusalLog.get();
        if (now - last > 10_000 && lastRefusalLog.compareAndSet(last, now)) {
            LOG.warnf("fresh-token: %d upstream refreshes in flight on this node (SPI option %s): further callers get retry_later "
                    + "until the IdP answers faster", max, MAX_OPTION);
        }
        return null;
    }

    /** Back to the defaults (unit tests only). */
    static synchronized void reset() {
        max = DEFAULT_MAX;
        waitMs = DEFAULT_WAIT_MS;
        permits = new Semaphore(DEFAULT_MAX);
    }

    public static int limit() {
        return max;
    }

    public static int inFlight() {
        return max - permits.availablePermits();
    }
}
