package safefile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"strconv"
	"syscall"
)

// TooLargeError says that an input is over its size limit.
type TooLargeError struct {
	Name  string
	Limit int64
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("%s: file too large (max %s)", e.Name, Size(e.Limit))
}

// NotRegularError says that an input is not a regular file (a device such as /dev/zero, a
// pipe, a directory): such a file can be endless or block forever.
type NotRegularError struct {
	Name string
	Kind string // "a character device"
}

func (e *NotRegularError) Error() string {
	return fmt.Sprintf("%s is %s, not a regular file", e.Name, e.Kind)
}

// Reader reads one regular file and fails with a *TooLargeError past its limit.
type Reader struct {
	f    *os.File
	info fs.FileInfo
	r    io.Reader
}

// Open opens path for reading at most limit bytes. A file that is not a regular file is
// refused with a *NotRegularError (it is opened without blocking, so a named pipe is refused
// too rather than waited on); one larger than limit with a *TooLargeError.
func Open(path string, limit int64) (*Reader, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, &NotRegularError{Name: path, Kind: kind(fi.Mode())}
	}
	if fi.Size() > limit {
		f.Close()
		return nil, &TooLargeError{Name: path, Limit: limit}
	}
	return &Reader{f: f, info: fi, r: Limit(f, path, limit)}, nil
}

// Read reads from the file; past the limit it returns a *TooLargeError (the file grew after
// it was opened).
func (r *Reader) Read(p []byte) (int, error) { return r.r.Read(p) }

// Info returns what fstat said of the open file: the file read, whatever its path points to
// meanwhile.
func (r *Reader) Info() fs.FileInfo { return r.info }

// ReadAt reads from the open file at an offset (for readers that make several passes over
// the same bytes, whatever the path points to meanwhile).
func (r *Reader) ReadAt(p []byte, off int64) (int, error) { return r.f.ReadAt(p, off) }

// Close closes the file.
func (r *Reader) Close() error { return r.f.Close() }

// ReadAll reads the rest of the file.
func (r *Reader) ReadAll() ([]byte, error) { return readAll(r, r.info.Size()) }

// ReadFile reads a whole regular file of at most limit bytes.
func ReadFile(path string, limit int64) ([]byte, error) {
	r, err := Open(path, limit)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return r.ReadAll()
}

// ReadAll reads r to its end, at most limit bytes: for standard input, which may be endless.
// name names r in the *TooLargeError.
func ReadAll(r io.Reader, name string, limit int64) ([]byte, error) {
	return readAll(Limit(r, name, limit), 0)
}

func readAll(r io.Reader, sizeHint int64) ([]byte, error) {
	buf := make([]byte, 0, max(sizeHint+1, 512))
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// Limit returns a reader of r that fails with a *TooLargeError naming name once r has more
// than limit bytes.
func Limit(r io.Reader, name string, limit int64) io.Reader {
	return &limitReader{r: r, name: name, limit: limit, left: limit}
}

type limitReader struct {
	r           io.Reader
	name        string
	limit, left int64
}

func (l *limitReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if l.left <= 0 {
		// At the limit: one more byte means too large, EOF means exactly the limit.
		var one [1]byte
		n, err := l.r.Read(one[:])
		if n > 0 {
			return 0, &TooLargeError{Name: l.name, Limit: l.limit}
		}
		return 0, err
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	return n, err
}

// ChangeableByOthers says who, besides root and the given users, could have changed a file
// ("" when no one): the group or everyone when the file is writable by them, or its owner.
func ChangeableByOthers(fi fs.FileInfo, trusted ...int) string {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return ""
	}
	perm := fi.Mode().Perm()
	switch {
	case perm&0o002 != 0:
		return fmt.Sprintf("every user can write it (mode %04o)", perm)
	case perm&0o020 != 0 && st.Gid != 0:
		return fmt.Sprintf("group %s can write it (mode %04o)", groupName(st.Gid), perm)
	}
	if st.Uid == 0 {
		return ""
	}
	for _, uid := range trusted {
		if uid >= 0 && uint32(uid) == st.Uid {
			return ""
		}
	}
	return "it belongs to user " + userName(st.Uid)
}

func userName(uid uint32) string {
	id := strconv.FormatUint(uint64(uid), 10)
	if u, err := user.LookupId(id); err == nil {
		return u.Username + " (" + id + ")"
	}
	return id
}

func groupName(gid uint32) string {
	id := strconv.FormatUint(uint64(gid), 10)
	if g, err := user.LookupGroupId(id); err == nil {
		return g.Name + " (" + id + ")"
	}
	return id
}

// Size formats a byte count for a message: 2 GiB, 256 MiB, 1536 KiB, 100 bytes.
func Size(n int64) string {
	for _, u := range []struct {
		shift uint
		name  string
	}{{30, "GiB"}, {20, "MiB"}, {10, "KiB"}} {
		if n >= 1<<u.shift && n%(1<<u.shift) == 0 {
			return strconv.FormatInt(n>>u.shift, 10) + " " + u.name
		}
	}
	return strconv.FormatInt(n, 10) + " bytes"
}
