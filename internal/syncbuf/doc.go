// Package syncbuf provides Buffer, a bytes.Buffer safe for concurrent
// writers and readers: the place a child process's stdout and stderr go
// while the parent watches them.
package syncbuf
