package netkit

// #include "netkit.h"
import "C"

import (
	"errors"
	"fmt"
	"syscall"
)

// Kind is the kind of a failure: one of libnetkit's NETKIT_E_* status codes.
type Kind int

// The kinds of failure (libnetkit's status codes).
const (
	KindInvalid     Kind = C.NETKIT_E_INVALID
	KindNotFound    Kind = C.NETKIT_E_NOT_FOUND
	KindExists      Kind = C.NETKIT_E_EXISTS
	KindUnsupported Kind = C.NETKIT_E_UNSUPPORTED
	KindPermission  Kind = C.NETKIT_E_PERMISSION
	KindBusy        Kind = C.NETKIT_E_BUSY
	KindIO          Kind = C.NETKIT_E_IO
	KindInternal    Kind = C.NETKIT_E_INTERNAL
	KindExhausted   Kind = C.NETKIT_E_EXHAUSTED
	KindCheckFailed Kind = C.NETKIT_E_CHECK_FAILED
)

// String is the status code's C name ("NETKIT_E_NOT_FOUND").
func (k Kind) String() string {
	return C.GoString(C.netkit_status_name(C.int(k)))
}

// The sentinel errors: errors.Is(err, netkit.ErrNotFound) is true for every *Error of that
// kind. They are never returned themselves.
var (
	// ErrInvalid: an argument was rejected (bad name, bad configuration, closed object) or
	// the kernel said EINVAL.
	ErrInvalid = errors.New("netkit: invalid argument")
	// ErrNotFound: the namespace, link, address, route or container does not exist.
	ErrNotFound = errors.New("netkit: not found")
	// ErrExists: the object exists already.
	ErrExists = errors.New("netkit: already exists")
	// ErrNotSupported: the running kernel does not support this (a link kind without driver,
	// such as ipip on a kernel without the module).
	ErrNotSupported = errors.New("netkit: not supported by this kernel")
	// ErrPermission: not permitted (netkit needs CAP_NET_ADMIN and CAP_SYS_ADMIN).
	ErrPermission = errors.New("netkit: permission denied")
	// ErrBusy: the object is busy; try again later.
	ErrBusy = errors.New("netkit: busy")
	// ErrIO: another failure of the kernel or a system call (Errno says which).
	ErrIO = errors.New("netkit: I/O error")
	// ErrInternal: a bug in netkit (a panic inside the library).
	ErrInternal = errors.New("netkit: internal error")
	// ErrExhausted: an address pool has no free address left.
	ErrExhausted = errors.New("netkit: address pool exhausted")
	// ErrCheckFailed: Check found the attachment differs from what Attach made.
	ErrCheckFailed = errors.New("netkit: check failed")
)

var sentinels = map[Kind]error{
	KindInvalid:     ErrInvalid,
	KindNotFound:    ErrNotFound,
	KindExists:      ErrExists,
	KindUnsupported: ErrNotSupported,
	KindPermission:  ErrPermission,
	KindBusy:        ErrBusy,
	KindIO:          ErrIO,
	KindInternal:    ErrInternal,
	KindExhausted:   ErrExhausted,
	KindCheckFailed: ErrCheckFailed,
}

// Error is every error the package returns: the kind, the kernel's errno (0 when none) and
// libnetkit's message, which names the operation, the object and the namespace.
//
// errors.Is(err, ErrNotFound) (and the other sentinels) matches the kind; errors.Is(err,
// syscall.EEXIST) (or os.ErrExist, through syscall.Errno) matches the errno.
type Error struct {
	Kind    Kind
	Errno   syscall.Errno
	Message string
}

// Error is the message ("netkit: " and the kind's name when the library gave none).
func (e *Error) Error() string {
	if e.Message == "" {
		return "netkit: " + e.Kind.String()
	}
	return e.Message
}

// Is reports whether target is the sentinel of e's kind.
func (e *Error) Is(target error) bool {
	s, ok := sentinels[e.Kind]
	return ok && s == target
}

// Unwrap returns the errno (nil when there is none), so errors.Is and errors.As see it.
func (e *Error) Unwrap() error {
	if e.Errno == 0 {
		return nil
	}
	return e.Errno
}

// invalidf is an ErrInvalid made on the Go side (before any call into the library).
func invalidf(format string, args ...interface{}) error {
	return &Error{Kind: KindInvalid, Message: "netkit: " + fmt.Sprintf(format, args...)}
}

// errClosed is the error of a method called on a closed object.
func errClosed(what string) error {
	return invalidf("use of a closed %s", what)
}

// check turns a status and its error object into a Go error (nil for NETKIT_OK) and frees
// the error object.
func check(status C.int, cerr *C.netkit_error) error {
	if status == C.NETKIT_OK {
		return nil
	}
	e := &Error{Kind: Kind(status)}
	if cerr != nil {
		e.Message = C.GoString(C.netkit_error_message(cerr))
		e.Errno = syscall.Errno(C.netkit_error_errno(cerr))
		C.netkit_error_free(cerr)
	}
	return e
}
