package scrape

import (
	"errors"
	"net/url"
	"strings"
)

// redactTarget is target as logs, errors and answers show it: a URL with its password (or a
// user name without password, often a token) replaced by "xxxxx". A target with an '@' that
// does not parse as a URL with user info there is shown from after its last '@'.
func redactTarget(target string) string {
	i := strings.LastIndexByte(target, '@')
	if i < 0 {
		return target
	}
	u, err := url.Parse(target)
	if err != nil || u.User == nil {
		return target[i+1:]
	}
	if _, ok := u.User.Password(); !ok {
		u.User = url.User("xxxxx")
	}
	return u.Redacted()
}

// errUserInfo replaces the error of parsing a target with user info (an '@'): what url.Parse
// says about it may quote part of the password.
var errUserInfo = errors.New("a URL with user info that does not parse (escape '/', '?', '#', '%' and ' ' in a password)")

// targetURLError is what an error of parsing target as a URL (a *url.Error, which quotes the
// whole target) may show: its inner error, or errUserInfo when target has an '@'.
func targetURLError(target string, err error) error {
	if strings.Contains(target, "@") {
		return errUserInfo
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// fetchError is err, an error of fetching a URL, with the URL of a *url.Error redacted (net/http
// hides a password there, but not a user name without password).
func fetchError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return &url.Error{Op: ue.Op, URL: redactTarget(ue.URL), Err: ue.Err}
	}
	return err
}
