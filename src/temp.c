/*
** temp.c: the temp files the core writes before a rename puts them in place (downloads, the
** file store's private files). Each is made beside its destination, so that the rename is atomic,
** under a random name ".<name>.wxmedia-XXXXXX", with O_CREAT|O_EXCL|O_NOFOLLOW: it is always a
** new file of ours, never a planted file or symlink. The mode given (0666 for a download, 0600 for
** a private file) goes through the umask as for any new file; nothing here calls umask(), which
** is process-wide and not thread-safe (nginx's threads run this code).
**
** While it exists, a temp file's path is in a process-wide registry that a signal handler can read:
** core.remove_temp_files_on_signals() installs handlers for SIGTERM, SIGHUP and SIGPIPE that remove
** them, then die of the signal as before. Opt-in: a library must not take signals from its host
** (nginx has its own handlers); the command line calls it.
*/
#define _GNU_SOURCE 1       /* renameat2 and RENAME_NOREPLACE, where glibc has them */

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"

#define TEMP_MARK ".wxmedia-"
#define TEMP_RANDOM 6
#define TEMP_BASE_MAX 200          /* keeps ".<base>.wxmedia-XXXXXX" under NAME_MAX */
#define TEMP_TRIES 100

/* {====== the registry ======
** A fixed table, so that the signal handler reads it without locks or allocation. A slot is taken
** with a compare-and-swap on `taken`; `seq` is a sequence lock on `path`: odd while the path is
** published and stable, even otherwise. The handler copies a path whose seq is odd and unlinks the
** copy only if seq did not change meanwhile, so it never unlinks a half-written or reused name.
** A full table only means that a signal would leave that one file behind.
*/
#define TEMP_SLOTS 64

static struct temp_slot {
  unsigned seq;
  int taken;
  char path[PATH_MAX];
} slots[TEMP_SLOTS];

static int registry_add (const char *path) {
  int i;
  if (strlen(path) >= PATH_MAX) return -1;
  for (i = 0; i < TEMP_SLOTS; i++) {
    int free_slot = 0;
    if (__atomic_compare_exchange_n(&slots[i].taken, &free_slot, 1, 0, __ATOMIC_ACQ_REL,
                                    __ATOMIC_RELAXED)) {
      strcpy(slots[i].path, path);
      __atomic_fetch_add(&slots[i].seq, 1, __ATOMIC_RELEASE);     /* odd: published */
      return i;
    }
  }
  return -1;
}

static void registry_remove (int i) {
  if (i < 0) return;
  __atomic_fetch_add(&slots[i].seq, 1, __ATOMIC_RELEASE);         /* even: withdrawn */
  __atomic_store_n(&slots[i].taken, 0, __ATOMIC_RELEASE);
}

/* Async-signal-safe: loads, a byte copy, unlink. */
static void registry_unlink_all (void) {
  int i;
  for (i = 0; i < TEMP_SLOTS; i++) {
    char copy[PATH_MAX];
    size_t k;
    unsigned seq = __atomic_load_n(&slots[i].seq, __ATOMIC_ACQUIRE);
    if ((seq & 1u) == 0) continue;
    for (k = 0; k + 1 < sizeof copy && slots[i].path[k] != '\0'; k++) copy[k] = slots[i].path[k];
    copy[k] = '\0';
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    if (__atomic_load_n(&slots[i].seq, __ATOMIC_RELAXED) == seq) (void)unlink(copy);
  }
}

static void on_signal (int sig) {
  struct sigaction dfl;
  int saved = errno;
  registry_unlink_all();
  memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  (void)sigaction(sig, &dfl, NULL);
  errno = saved;
  (void)raise(sig);          /* delivered when this handler returns: the process dies of sig */
}

/*
** The handlers point into this library, which lua_close unloads with the other C modules: a signal
** that came after would jump into unmapped memory. Loading it once more with RTLD_NODELETE keeps
** it mapped until the process ends (the handle is never closed, on purpose).
*/
static void pin_library (void) {
  Dl_info info;
  if (dladdr((void *)on_signal, &info) != 0 && info.dli_fname != NULL)
    (void)dlopen(info.dli_fname, RTLD_NOW | RTLD_NODELETE);
}

/*
** core.remove_temp_files_on_signals() -> true. A signal whose action is not the default (ignored,
** or handled by the program) is left alone: the program chose what it does.
*/
static int core_remove_temp_files_on_signals (lua_State *L) {
  static const int sigs[] = { SIGTERM, SIGHUP, SIGPIPE };
  size_t i;
  pin_library();
  for (i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
    struct sigaction old, sa;
    if (sigaction(sigs[i], NULL, &old) != 0) continue;
    if ((old.sa_flags & SA_SIGINFO) != 0 || old.sa_handler != SIG_DFL) continue;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    (void)sigaction(sigs[i], &sa, NULL);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* }====== */

/* Six characters of [A-Za-z0-9]: the clock, the process, a counter and a stack address, mixed. */
static void random_name (char *out) {
  static const char chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  static unsigned counter;
  int marker = 0;
  uint64_t x = (uint64_t)(wxm_monotonic() * 1e9) ^ ((uint64_t)getpid() << 32)
             ^ ((uint64_t)__atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED) * 0x9E3779B97F4A7C15ull)
             ^ (uint64_t)(uintptr_t)&marker;
  int i;
  /* splitmix64's finaliser */
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  x ^= x >> 31;
  for (i = 0; i < TEMP_RANDOM; i++) {
    out[i] = chars[x % (sizeof chars - 1)];
    x /= sizeof chars - 1;
  }
}

int wxm_temp_open (wxm_temp *tmp, const char *beside, mode_t mode) {
  const char *slash = strrchr(beside, '/');
  size_t dirlen = slash ? (size_t)(slash - beside) + 1 : 0;
  const char *base = beside + dirlen;
  size_t baselen = strlen(base), at;
  int tries;
  if (baselen > TEMP_BASE_MAX) baselen = TEMP_BASE_MAX;
  tmp->path = (char *)malloc(dirlen + 1 + baselen + sizeof TEMP_MARK - 1 + TEMP_RANDOM + 1);
  if (tmp->path == NULL) return ENOMEM;
  memcpy(tmp->path, beside, dirlen);
  tmp->path[dirlen] = '.';
  memcpy(tmp->path + dirlen + 1, base, baselen);
  memcpy(tmp->path + dirlen + 1 + baselen, TEMP_MARK, sizeof TEMP_MARK - 1);
  at = dirlen + 1 + baselen + sizeof TEMP_MARK - 1;
  tmp->path[at + TEMP_RANDOM] = '\0';
  for (tries = 0; tries < TEMP_TRIES; tries++) {
    random_name(tmp->path + at);
    tmp->fd = open(tmp->path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, mode);
    if (tmp->fd >= 0) {
      tmp->slot = registry_add(tmp->path);
      return 0;
    }
    if (errno != EEXIST && errno != EINTR) break;
  }
  {
    int e = tries < TEMP_TRIES ? errno : EEXIST;
    free(tmp->path);
    tmp->path = NULL;
    return e;
  }
}

/* Flushed to disk first when sync: a crash cannot then leave an empty file under the name. */
int wxm_temp_close (wxm_temp *tmp, int sync) {
  int e = 0;
  if (tmp->fd < 0) return 0;
  if (sync && fsync(tmp->fd) != 0) e = errno;
  if (close(tmp->fd) != 0 && e == 0) e = errno;
  tmp->fd = -1;
  return e;
}

/*
** Never replaces an existing file: renameat2(RENAME_NOREPLACE) where the kernel and the file
** system have it, else link() (which fails on an existing name) and unlink of the temp name.
*/
static int rename_noreplace (const char *from, const char *to) {
#ifdef RENAME_NOREPLACE
  if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0) return 0;
  if (errno != EINVAL && errno != ENOSYS) return errno;
#endif
  if (link(from, to) != 0) return errno;
  (void)unlink(from);
  return 0;
}

int wxm_temp_rename (wxm_temp *tmp, const char *dest, int no_replace) {
  int e = 0;
  if (no_replace) e = rename_noreplace(tmp->path, dest);
  else if (rename(tmp->path, dest) != 0) e = errno;
  if (e != 0) return e;
  registry_remove(tmp->slot);
  tmp->slot = -1;
  free(tmp->path);
  tmp->path = NULL;
  return 0;
}

void wxm_temp_discard (wxm_temp *tmp) {
  if (tmp->fd >= 0) (void)close(tmp->fd);
  tmp->fd = -1;
  if (tmp->path != NULL) {
    (void)unlink(tmp->path);
    registry_remove(tmp->slot);
    tmp->slot = -1;
    free(tmp->path);
    tmp->path = NULL;
  }
}

static const luaL_Reg functions[] = {
  { "remove_temp_files_on_signals", core_remove_temp_files_on_signals },
  { NULL, NULL }
};

void wxm_temp_open_lib (lua_State *L) {
  luaL_setfuncs(L, functions, 0);
}
