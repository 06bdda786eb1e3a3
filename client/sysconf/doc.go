// Package sysconf is temporary.
package sysconf
