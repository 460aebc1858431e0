/*
 * The conformance scenario, in C (see ../README.md).
 *
 * Arguments: LOCK DATA N SEMDIR [REDIS_NAME REDIS_DATA]. Holding one permit
 * of the two-slot semaphore `conformance` in SEMDIR, increment the number
 * in DATA N times, each under the file lock LOCK; with a Redis lock
 * granted, increment REDIS_DATA N times under the fenced Redis lock
 * REDIS_NAME, checking that the tokens grow. Prints `ok`.
 */
#include <stdlib.h>

#include "portalocker_guest.h"

static int fail(const char *what, const pl_error *err) {
    fprintf(stderr, "%s: %s: %s\n", what, pl_error_name(err->kind), err->message);
    return 1;
}

static int increment(const char *path) {
    long value = 0;
    FILE *file = fopen(path, "r");
    if (file != NULL) {
        if (fscanf(file, "%ld", &value) != 1) value = 0;
        fclose(file);
    }
    file = fopen(path, "w");
    if (file == NULL) return -1;
    fprintf(file, "%ld", value + 1);
    return fclose(file);
}

static const int64_t MINUTE = 60LL * 1000 * 1000 * 1000;

int main(int argc, char **argv) {
    if (argc != 5 && argc != 7) {
        fprintf(stderr, "usage: LOCK DATA N SEMDIR [REDIS_NAME REDIS_DATA]\n");
        return 2;
    }
    const char *lock_path = argv[1], *data = argv[2], *semdir = argv[4];
    int n = atoi(argv[3]);
    pl_error err;

    pl_semaphore sem;
    if (!pl_semaphore_open("conformance", 2, semdir, &sem, &err)) return fail("semaphore", &err);
    {
        PL_AUTO_PERMIT pl_permit permit;
        if (!pl_semaphore_acquire(&sem, MINUTE, &permit, &err)) return fail("permit", &err);
        if (permit.slot > 1) {
            fprintf(stderr, "slot %u of 2\n", permit.slot);
            return 1;
        }
        pl_file_lock lock;
        if (!pl_file_lock_open(lock_path, &lock, &err)) return fail("open", &err);
        for (int i = 0; i < n; i++) {
            PL_AUTO_FILE_GUARD pl_file_guard guard;
            if (!pl_file_lock_lock(&lock, PL_EXCLUSIVE, MINUTE, &guard, &err)) return fail("lock", &err);
            if (increment(data) != 0) {
                perror(data);
                return 1;
            }
            if (!pl_file_guard_release(&guard, &err)) return fail("release", &err);
        }
        pl_file_lock_close(&lock);
    }
    pl_semaphore_close(&sem);

    if (argc == 7) {
        pl_redis_lock redis;
        if (!pl_redis_lock_open(argv[5], true, &redis, &err)) return fail("redis open", &err);
        uint64_t last = 0;
        for (int i = 0; i < n; i++) {
            PL_AUTO_REDIS_GUARD pl_redis_guard guard;
            if (!pl_redis_lock_lock(&redis, PL_EXCLUSIVE, MINUTE, &guard, &err)) return fail("redis lock", &err);
            if (!guard.fenced || guard.fencing_token <= last) {
                fprintf(stderr, "token %llu after %llu\n", (unsigned long long)guard.fencing_token, (unsigned long long)last);
                return 1;
            }
            last = guard.fencing_token;
            if (increment(argv[6]) != 0) {
                perror(argv[6]);
                return 1;
            }
        }
        pl_redis_lock_close(&redis);
    }
    printf("ok\n");
    return 0;
}
