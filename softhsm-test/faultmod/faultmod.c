/*
 * faultmod: a PKCS#11 module that injects faults into another one.
 *
 * Loaded in place of SoftHSM2, it dlopens the real module named by
 * $ANVIL_FAULT_MODULE and hands out a copy of the real function list in which a
 * few functions are wrapped. What the wrappers do comes from the control file
 * named by $ANVIL_FAULT_CONTROL, which tests rewrite while the process runs; it
 * is re-read when its mtime, size or inode change (one stat per wrapped call).
 * Every rewrite starts the rules' counters afresh. Rewrite it atomically
 * (write a temporary file, rename it over the old one). The library is linked
 * with -z nodelete, so that its counters survive the user finalising and
 * unloading it (as recovery does).
 *
 * One rule per line, '#' starts a comment:
 *
 *   FUNC error=CKR_NAME|NUMBER [count=N] [every=K] [prob=P]
 *       FUNC returns that code instead of calling the real module (C_Sign
 *       first finishes the real operation, so that the session stays usable).
 *   FUNC hang=MS [count=N] [every=K] [prob=P]
 *       FUNC blocks for MS milliseconds (0: until the control file changes),
 *       then calls the real module.
 *   C_Sign corrupt [count=N] [every=K] [prob=P]
 *       a successful signature comes back with one byte flipped.
 *   FUNC closesession [count=N] [every=K] [prob=P]
 *       the session the call is made on is closed in the real module first,
 *       so that this call and every later one on it fail as on a session
 *       the HSM dropped.
 *   closeall
 *       once per version of the file: C_CloseAllSessions on every slot seen.
 *   sessions=N
 *       C_OpenSession answers CKR_SESSION_COUNT while N sessions are open.
 *
 * count=N fires N times at most; every=K fires on every K-th matching call;
 * prob=P fires with probability P. FUNC is one of the wrapped functions:
 * C_OpenSession C_CloseSession C_Login C_Logout C_SignInit C_Sign
 * C_FindObjectsInit C_FindObjects C_GetAttributeValue C_GetSessionInfo
 * C_GetTokenInfo C_GenerateRandom.
 *
 * The number of C_Login calls is written to $ANVIL_FAULT_COUNTER (default: the
 * control file's path + ".logins") after each call, so that a test can see
 * whether anything retried a refused PIN.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <p11-kit/pkcs11.h>

#define MAX_RULES 32
#define MAX_SLOTS 16

enum action { ACT_ERROR, ACT_HANG, ACT_CORRUPT, ACT_CLOSESESSION };

struct rule {
	char func[40];
	enum action act;
	CK_RV rv;
	long hang_ms;
	long count; /* 0: unlimited */
	long every; /* 0: every call */
	double prob; /* 0: always */
	long seen, fired;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static void *real_lib;
static CK_FUNCTION_LIST_PTR real;
static CK_FUNCTION_LIST ours;

static struct rule rules[MAX_RULES];
static int nrules;
static long session_limit = -1;
static long open_sessions;
static CK_SLOT_ID slots[MAX_SLOTS];
static int nslots;
static int closeall_pending;
static struct stat control_st;
static int control_loaded;
static unsigned int rand_state = 12345;
static unsigned long file_version;

static const struct {
	const char *name;
	CK_RV rv;
} rv_names[] = {
	{"CKR_OK", CKR_OK},
	{"CKR_HOST_MEMORY", CKR_HOST_MEMORY},
	{"CKR_GENERAL_ERROR", CKR_GENERAL_ERROR},
	{"CKR_FUNCTION_FAILED", CKR_FUNCTION_FAILED},
	{"CKR_DEVICE_ERROR", CKR_DEVICE_ERROR},
	{"CKR_DEVICE_MEMORY", CKR_DEVICE_MEMORY},
	{"CKR_DEVICE_REMOVED", CKR_DEVICE_REMOVED},
	{"CKR_TOKEN_NOT_PRESENT", CKR_TOKEN_NOT_PRESENT},
	{"CKR_SESSION_CLOSED", CKR_SESSION_CLOSED},
	{"CKR_SESSION_COUNT", CKR_SESSION_COUNT},
	{"CKR_SESSION_HANDLE_INVALID", CKR_SESSION_HANDLE_INVALID},
	{"CKR_OBJECT_HANDLE_INVALID", CKR_OBJECT_HANDLE_INVALID},
	{"CKR_KEY_HANDLE_INVALID", CKR_KEY_HANDLE_INVALID},
	{"CKR_USER_NOT_LOGGED_IN", CKR_USER_NOT_LOGGED_IN},
	{"CKR_PIN_INCORRECT", CKR_PIN_INCORRECT},
	{"CKR_PIN_LOCKED", CKR_PIN_LOCKED},
	{"CKR_PIN_EXPIRED", CKR_PIN_EXPIRED},
	{"CKR_PIN_LEN_RANGE", CKR_PIN_LEN_RANGE},
	{"CKR_OPERATION_ACTIVE", CKR_OPERATION_ACTIVE},
	{"CKR_CRYPTOKI_NOT_INITIALIZED", CKR_CRYPTOKI_NOT_INITIALIZED},
};

static const char *control_path(void) { return getenv("ANVIL_FAULT_CONTROL"); }

static int parse_rv(const char *s, CK_RV *rv) {
	for (size_t i = 0; i < sizeof rv_names / sizeof rv_names[0]; i++) {
		if (strcmp(s, rv_names[i].name) == 0) {
			*rv = rv_names[i].rv;
			return 0;
		}
	}
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 0);
	if (errno || *end || end == s)
		return -1;
	*rv = v;
	return 0;
}

/* load parses the control file into the rules. Called with mu held. */
static void load(const char *path) {
	nrules = 0;
	session_limit = -1;
	file_version++;
	FILE *f = fopen(path, "r");
	if (!f)
		return;
	char line[512];
	while (fgets(line, sizeof line, f)) {
		char *hash = strchr(line, '#');
		if (hash)
			*hash = 0;
		char *save, *tok = strtok_r(line, " \t\r\n", &save);
		if (!tok)
			continue;
		if (strcmp(tok, "closeall") == 0) {
			closeall_pending = 1;
			continue;
		}
		if (strncmp(tok, "sessions=", 9) == 0) {
			session_limit = atol(tok + 9);
			continue;
		}
		if (nrules == MAX_RULES)
			break;
		struct rule *r = &rules[nrules];
		memset(r, 0, sizeof *r);
		snprintf(r->func, sizeof r->func, "%s", tok);
		int ok = 0;
		while ((tok = strtok_r(NULL, " \t\r\n", &save))) {
			if (strncmp(tok, "error=", 6) == 0) {
				r->act = ACT_ERROR;
				ok = parse_rv(tok + 6, &r->rv) == 0;
			} else if (strncmp(tok, "hang=", 5) == 0) {
				r->act = ACT_HANG;
				r->hang_ms = atol(tok + 5);
				ok = 1;
			} else if (strcmp(tok, "corrupt") == 0) {
				r->act = ACT_CORRUPT;
				ok = 1;
			} else if (strcmp(tok, "closesession") == 0) {
				r->act = ACT_CLOSESESSION;
				ok = 1;
			} else if (strncmp(tok, "count=", 6) == 0) {
				r->count = atol(tok + 6);
			} else if (strncmp(tok, "every=", 6) == 0) {
				r->every = atol(tok + 6);
			} else if (strncmp(tok, "prob=", 5) == 0) {
				r->prob = atof(tok + 5);
			}
		}
		if (ok)
			nrules++;
		else
			fprintf(stderr, "faultmod: ignoring a rule for %s without a valid action\n", r->func);
	}
	fclose(f);
}

/* refresh re-reads the control file if it changed. Called with mu held. */
static void refresh(void) {
	const char *path = control_path();
	if (!path)
		return;
	struct stat st;
	if (stat(path, &st) != 0) {
		if (control_loaded) {
			nrules = 0;
			session_limit = -1;
			control_loaded = 0;
			file_version++;
		}
		return;
	}
	if (control_loaded && st.st_ino == control_st.st_ino && st.st_size == control_st.st_size &&
	    st.st_mtim.tv_sec == control_st.st_mtim.tv_sec && st.st_mtim.tv_nsec == control_st.st_mtim.tv_nsec)
		return;
	control_st = st;
	control_loaded = 1;
	load(path);
}

/* do_closeall closes every session of every slot seen, once per file version.
 * Called with mu held. */
static void do_closeall(void) {
	if (!closeall_pending || !real)
		return;
	closeall_pending = 0;
	for (int i = 0; i < nslots; i++)
		real->C_CloseAllSessions(slots[i]);
	open_sessions = 0;
}

/* match finds the rule that fires for this call of func, if any, and counts it. */
static int match(const char *func, struct rule *out) {
	int fired = 0;
	pthread_mutex_lock(&mu);
	refresh();
	do_closeall();
	for (int i = 0; i < nrules && !fired; i++) {
		struct rule *r = &rules[i];
		if (strcmp(r->func, func) != 0)
			continue;
		r->seen++;
		if (r->count > 0 && r->fired >= r->count)
			continue;
		if (r->every > 0 && r->seen % r->every != 0)
			continue;
		if (r->prob > 0 && (double)rand_r(&rand_state) / RAND_MAX >= r->prob)
			continue;
		r->fired++;
		*out = *r;
		fired = 1;
	}
	pthread_mutex_unlock(&mu);
	return fired;
}

static unsigned long current_version(void) {
	pthread_mutex_lock(&mu);
	refresh();
	unsigned long v = file_version;
	pthread_mutex_unlock(&mu);
	return v;
}

/* hang blocks for ms milliseconds, or until the control file changes when ms is
 * 0; a change of the file ends a timed hang early too. */
static void hang(long ms) {
	unsigned long v = current_version();
	struct timespec step = {0, 20 * 1000 * 1000};
	for (long waited = 0; ms == 0 || waited < ms; waited += 20) {
		nanosleep(&step, NULL);
		if (current_version() != v)
			return;
	}
}

/* before applies an error, hang or close rule to a call on session h (0 when
 * the call has none); it returns CKR_OK to go on to the real call. */
static CK_RV before_on(const char *func, CK_SESSION_HANDLE h, struct rule *r, int *corrupt) {
	if (corrupt)
		*corrupt = 0;
	if (!match(func, r))
		return CKR_OK;
	switch (r->act) {
	case ACT_CLOSESESSION:
		if (h && real->C_CloseSession(h) == CKR_OK) {
			pthread_mutex_lock(&mu);
			if (open_sessions > 0)
				open_sessions--;
			pthread_mutex_unlock(&mu);
		}
		return CKR_OK;
	case ACT_ERROR:
		return r->rv;
	case ACT_HANG:
		hang(r->hang_ms);
		return CKR_OK;
	case ACT_CORRUPT:
		if (corrupt)
			*corrupt = 1;
		return CKR_OK;
	}
	return CKR_OK;
}

static CK_RV before(const char *func, struct rule *r, int *corrupt) {
	return before_on(func, 0, r, corrupt);
}

static void note_slot(CK_SLOT_ID slot) {
	for (int i = 0; i < nslots; i++)
		if (slots[i] == slot)
			return;
	if (nslots < MAX_SLOTS)
		slots[nslots++] = slot;
}

static CK_RV w_Initialize(CK_VOID_PTR args) {
	pthread_mutex_lock(&mu);
	open_sessions = 0;
	pthread_mutex_unlock(&mu);
	return real->C_Initialize(args);
}

static CK_RV w_Finalize(CK_VOID_PTR reserved) {
	pthread_mutex_lock(&mu);
	open_sessions = 0;
	pthread_mutex_unlock(&mu);
	return real->C_Finalize(reserved);
}

static CK_RV w_OpenSession(CK_SLOT_ID slot, CK_FLAGS flags, CK_VOID_PTR app, CK_NOTIFY notify, CK_SESSION_HANDLE_PTR h) {
	struct rule r;
	CK_RV rv = before("C_OpenSession", &r, NULL);
	if (rv != CKR_OK)
		return rv;
	pthread_mutex_lock(&mu);
	note_slot(slot);
	if (session_limit >= 0 && open_sessions >= session_limit) {
		pthread_mutex_unlock(&mu);
		return CKR_SESSION_COUNT;
	}
	open_sessions++; /* reserve, so that concurrent opens respect the limit */
	pthread_mutex_unlock(&mu);
	rv = real->C_OpenSession(slot, flags, app, notify, h);
	if (rv != CKR_OK) {
		pthread_mutex_lock(&mu);
		open_sessions--;
		pthread_mutex_unlock(&mu);
	}
	return rv;
}

static CK_RV w_CloseSession(CK_SESSION_HANDLE h) {
	struct rule r;
	CK_RV rv = before("C_CloseSession", &r, NULL);
	if (rv != CKR_OK)
		return rv;
	rv = real->C_CloseSession(h);
	if (rv == CKR_OK) {
		pthread_mutex_lock(&mu);
		if (open_sessions > 0)
			open_sessions--;
		pthread_mutex_unlock(&mu);
	}
	return rv;
}

static CK_RV w_CloseAllSessions(CK_SLOT_ID slot) {
	CK_RV rv = real->C_CloseAllSessions(slot);
	pthread_mutex_lock(&mu);
	open_sessions = 0;
	pthread_mutex_unlock(&mu);
	return rv;
}

/* count_login adds one to the number in the counter file. The file, not
 * memory, holds the count: the library is unloaded and loaded again whenever
 * its user finalises it, as recovery does. */
static void count_login(void) {
	pthread_mutex_lock(&mu);
	const char *path = getenv("ANVIL_FAULT_COUNTER");
	char buf[4096];
	if (!path && control_path()) {
		snprintf(buf, sizeof buf, "%s.logins", control_path());
		path = buf;
	}
	if (path) {
		long logins = 0;
		FILE *in = fopen(path, "r");
		if (in) {
			if (fscanf(in, "%ld", &logins) != 1)
				logins = 0;
			fclose(in);
		}
		logins++;
		char tmp[4200];
		snprintf(tmp, sizeof tmp, "%s.tmp%d", path, (int)getpid());
		FILE *f = fopen(tmp, "w");
		if (f) {
			fprintf(f, "%ld\n", logins);
			fclose(f);
			rename(tmp, path);
		}
	}
	pthread_mutex_unlock(&mu);
}

static CK_RV w_Login(CK_SESSION_HANDLE h, CK_USER_TYPE user, CK_UTF8CHAR_PTR pin, CK_ULONG len) {
	count_login();
	struct rule r;
	CK_RV rv = before("C_Login", &r, NULL);
	if (rv != CKR_OK)
		return rv;
	return real->C_Login(h, user, pin, len);
}

static CK_RV w_Logout(CK_SESSION_HANDLE h) {
	struct rule r;
	CK_RV rv = before("C_Logout", &r, NULL);
	if (rv != CKR_OK)
		return rv;
	return real->C_Logout(h);
}

static CK_RV w_SignInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE key) {
	struct rule r;
	CK_RV rv = before("C_SignInit", &r, NULL);
	if (rv != CKR_OK)
		return rv;
	return real->C_SignInit(h, m, key);
}

static CK_RV w_Sign(CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR sig, CK_ULONG_PTR siglen) {
	if (sig == NULL) /* a length query: not a signature, never a fault */
		return real->C_Sign(h, data, len, sig, siglen);
	struct rule r;
	int corrupt;
	CK_RV rv = before_on("C_Sign", h, &r, &corrupt);
	if (rv != CKR_OK) {
		/* Finish the real operation, so that the session can sign again, as
		 * it could after a real failure. */
		CK_BYTE scratch[2048];
		CK_ULONG n = sizeof scratch;
		real->C_Sign(h, data, len, scratch, &n);
		return rv;
	}
	rv = real->C_Sign(h, data, len, sig, siglen);
	if (rv == CKR_OK && corrupt && *siglen > 0)
		sig[*siglen / 2] ^= 0x01;
	return rv;
}

static CK_RV w_FindObjectsInit(CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR t, CK_ULONG n) {
	struct rule r;
	CK_RV rv = before("C_FindObjectsInit", &r, NULL);
	if (rv != CKR_OK)
		return rv;
	return real->C_FindObjectsInit(h, t, n);
}

static CK_RV w_FindObjects(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE_PTR o, CK_ULONG max, CK_ULONG_PTR n) {
	struct rule r;
	CK_RV rv = before("C_FindObjects", &r, NULL);
	if (rv != CKR_OK)
		return rv;
	return real->C_FindObjects(h, o, max, n);
}

static CK_RV w_GetAttributeValue(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR t, CK_ULONG n) {
	struct rule r;
	CK_RV rv = before("C_GetAttributeValue", &r, NULL);
	if (rv != CKR_OK)
		return rv;
	return real->C_GetAttributeValue(h, o, t, n);
}

static CK_RV w_GetSessionInfo(CK_SESSION_HANDLE h, CK_SESSION_INFO_PTR info) {
	struct rule r;
	CK_RV rv = before("C_GetSessionInfo", &r, NULL);
	if (rv != CKR_OK)
		return rv;
	return real->C_GetSessionInfo(h, info);
}

static CK_RV w_GetTokenInfo(CK_SLOT_ID slot, CK_TOKEN_INFO_PTR info) {
	struct rule r;
	CK_RV rv = before("C_GetTokenInfo", &r, NULL);
	if (rv != CKR_OK)
		return rv;
	return real->C_GetTokenInfo(slot, info);
}

static CK_RV w_GenerateRandom(CK_SESSION_HANDLE h, CK_BYTE_PTR buf, CK_ULONG len) {
	struct rule r;
	CK_RV rv = before("C_GenerateRandom", &r, NULL);
	if (rv != CKR_OK)
		return rv;
	return real->C_GenerateRandom(h, buf, len);
}

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list) {
	if (!list)
		return CKR_ARGUMENTS_BAD;
	pthread_mutex_lock(&mu);
	if (!real) {
		const char *path = getenv("ANVIL_FAULT_MODULE");
		if (!path) {
			fprintf(stderr, "faultmod: ANVIL_FAULT_MODULE is not set: name the real PKCS#11 module\n");
			pthread_mutex_unlock(&mu);
			return CKR_GENERAL_ERROR;
		}
		real_lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
		if (!real_lib) {
			fprintf(stderr, "faultmod: dlopen %s: %s\n", path, dlerror());
			pthread_mutex_unlock(&mu);
			return CKR_GENERAL_ERROR;
		}
		CK_C_GetFunctionList get = (CK_C_GetFunctionList)dlsym(real_lib, "C_GetFunctionList");
		CK_FUNCTION_LIST_PTR fl = NULL;
		if (!get || get(&fl) != CKR_OK || !fl) {
			fprintf(stderr, "faultmod: %s has no usable C_GetFunctionList\n", path);
			pthread_mutex_unlock(&mu);
			return CKR_GENERAL_ERROR;
		}
		real = fl;
		ours = *real;
		ours.C_GetFunctionList = C_GetFunctionList;
		ours.C_Initialize = w_Initialize;
		ours.C_Finalize = w_Finalize;
		ours.C_OpenSession = w_OpenSession;
		ours.C_CloseSession = w_CloseSession;
		ours.C_CloseAllSessions = w_CloseAllSessions;
		ours.C_Login = w_Login;
		ours.C_Logout = w_Logout;
		ours.C_SignInit = w_SignInit;
		ours.C_Sign = w_Sign;
		ours.C_FindObjectsInit = w_FindObjectsInit;
		ours.C_FindObjects = w_FindObjects;
		ours.C_GetAttributeValue = w_GetAttributeValue;
		ours.C_GetSessionInfo = w_GetSessionInfo;
		ours.C_GetTokenInfo = w_GetTokenInfo;
		ours.C_GenerateRandom = w_GenerateRandom;
	}
	*list = &ours;
	pthread_mutex_unlock(&mu);
	return CKR_OK;
}
